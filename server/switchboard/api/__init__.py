"""HTTP layer: FastAPI routers, request schemas and the error handler."""
