"""The HMI's GraphQL API (strawberry): types, schema and the FastAPI router with websocket auth."""
