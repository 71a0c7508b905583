-- pgflow (bench/js/peer-pgflow-w2.mjs) broadcasts run and step events from inside its SQL functions with Supabase
-- Realtime's realtime.send(payload jsonb, event text, topic text, private boolean). This cluster has no Supabase: this
-- stand-in has the same signature and sends nothing, so that pgflow's migrations and functions run unchanged. (On
-- Supabase each call inserts a row into realtime.messages: the figure measured here leaves that cost out.)
CREATE SCHEMA IF NOT EXISTS realtime;
CREATE OR REPLACE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
