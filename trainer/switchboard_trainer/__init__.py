"""The bundled LoRA trainer: a short YAML file and one command turn dialogues into a servable adapter."""
