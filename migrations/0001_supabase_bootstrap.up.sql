-- What Supabase provides and plain Postgres 15 lacks: the auth schema, auth.users,
-- auth.uid() / auth.jwt() / auth.role() reading request.jwt.claims as Supabase's do,
-- and Supabase's default privileges (every table granted to the API roles, RLS doing
-- the filtering), so tests see what production sees.
--
-- On Supabase the auth schema already exists and this migration does nothing; the
-- schema comment marks what it created, so the down never touches Supabase's own.
DO $bootstrap$
BEGIN
  IF EXISTS (SELECT FROM pg_namespace WHERE nspname = 'auth') THEN
    RAISE NOTICE 'auth schema present (Supabase): nothing to bootstrap';
    RETURN;
  END IF;

  CREATE SCHEMA auth;
  COMMENT ON SCHEMA auth IS 'sfts-bootstrap: stands in for Supabase Auth on plain Postgres';

  CREATE TABLE auth.users (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email              text,
    raw_user_meta_data jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
  );
  COMMENT ON TABLE auth.users IS 'Local stand-in for Supabase auth.users (id and email only).';

  -- As Supabase's: the legacy single-claim setting first, then the claims document.
  CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(
      nullif(current_setting('request.jwt.claim.sub', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
  $fn$;
  CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(
      nullif(current_setting('request.jwt.claim.role', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )::text
  $fn$;
  CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(
      nullif(current_setting('request.jwt.claim', true), ''),
      nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
  $fn$;

  GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
  GRANT EXECUTE ON FUNCTION auth.uid(), auth.role(), auth.jwt() TO anon, authenticated, service_role;

  -- Supabase's default privileges on the public schema.
  GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
END
$bootstrap$;
