-- Undo only what 0001 created: on Supabase the auth schema is Supabase's own.
DO $bootstrap$
BEGIN
  IF obj_description('auth'::regnamespace, 'pg_namespace') IS DISTINCT FROM
     'sfts-bootstrap: stands in for Supabase Auth on plain Postgres' THEN
    RAISE NOTICE 'auth schema not ours (Supabase): nothing to undo';
    RETURN;
  END IF;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM anon, authenticated, service_role;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM anon, authenticated, service_role;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON FUNCTIONS FROM anon, authenticated, service_role;
  REVOKE USAGE ON SCHEMA public FROM anon, authenticated, service_role;
  DROP SCHEMA auth CASCADE;
END
$bootstrap$;
