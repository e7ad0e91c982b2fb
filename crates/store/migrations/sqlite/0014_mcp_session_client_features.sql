-- What a legacy MCP session's client declared at initialize that the gateway may ask of it
-- (sampling, form- and URL-mode elicitation), as comma-separated names; the client (app) whose
-- token created it (its other grants, a step-up, may use it; other apps may not); and the least
-- severe log level it asked for (logging/setLevel).
ALTER TABLE mcp_sessions ADD COLUMN client_features TEXT NOT NULL DEFAULT '';
ALTER TABLE mcp_sessions ADD COLUMN client_id TEXT NOT NULL DEFAULT '';
ALTER TABLE mcp_sessions ADD COLUMN log_level TEXT;
