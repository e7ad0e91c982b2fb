-- What a legacy MCP session's client declared at initialize that the gateway may ask of it
-- (sampling, form- and URL-mode elicitation), as comma-separated names.
ALTER TABLE mcp_sessions ADD COLUMN client_features TEXT NOT NULL DEFAULT '';
