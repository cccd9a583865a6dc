{{/* Names and labels, as `helm create` makes them. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The endpoint picker: its own name and selector, so the InferencePool's pods never include it. */}}
{{- define "switchboard.epp.fullname" -}}
{{- printf "%s-epp" (include "switchboard.fullname" . | trunc 59 | trimSuffix "-") }}
{{- end }}

{{- define "switchboard.epp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}-epp
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "switchboard.epp.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
{{ include "switchboard.epp.selectorLabels" . }}
app.kubernetes.io/component: endpoint-picker
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The engine: vllm on a GPU, else .Values.engine. */}}
{{- define "switchboard.engine" -}}
{{- if .Values.gpu.enabled }}vllm{{ else }}{{ .Values.engine }}{{ end }}
{{- end }}

{{- define "switchboard.image" -}}
{{- $image := .Values.image }}
{{- if .Values.gpu.enabled }}{{ $image = .Values.gpu.image }}{{ end }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}

{{- define "switchboard.adapterClaim" -}}
{{- if eq .Values.adapters.source "existingClaim" }}
{{- required "adapters.existingClaim is required when adapters.source is existingClaim" .Values.adapters.existingClaim }}
{{- else if eq .Values.adapters.source "create" }}
{{- include "switchboard.fullname" . }}-adapters
{{- end }}
{{- end }}

{{/*
The server's YAML config: .Values.config plus, on a GPU with a quantization, engine_args.quantization.
host, port and engine are flags; state_dir, cache_dir and adapter_dir are env (they beat the image's ENV).
*/}}
{{- define "switchboard.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- range $key := list "host" "port" "engine" "state_dir" "cache_dir" "adapter_dir" "adapter_roots" "registry" "admin_key" "api_keys" }}
{{- if hasKey $config $key }}
{{- fail (printf "config.%s is set by the chart (flags, env or secrets), remove it from config" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.gpu.enabled .Values.gpu.quantization }}
{{- $engineArgs := deepCopy ($config.engine_args | default dict) }}
{{- $_ := set $engineArgs "quantization" .Values.gpu.quantization }}
{{- $_ := set $config "engine_args" $engineArgs }}
{{- end }}
{{- toYaml $config }}
{{- end }}
