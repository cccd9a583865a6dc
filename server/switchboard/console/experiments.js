// Not built yet.
export function init() {}
export function show() {}
export function hide() {}
