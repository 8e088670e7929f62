-- The tables of Stories From the Sun. Conventions (the seed's): UUID ids, created_at /
-- updated_at with trigger_set_updated_at(), soft deletes with partial indexes, explicit
-- ON DELETE everywhere, named constraints, a comment on every table.
--
-- Recordings are irreplaceable: nothing that holds or accounts for one (recordings,
-- usage_ledger, entitlements, reservations) is removed by a cascade from its family;
-- those foreign keys RESTRICT, so a hard family delete can't silently take them along.

CREATE FUNCTION public.trigger_set_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION public.trigger_set_updated_at() IS 'BEFORE UPDATE trigger: keeps updated_at current.';

-- Plans and their limits. Prices (Stripe ids) differ between test and live mode and
-- are filled per environment by a deploy step, not here.
CREATE TABLE public.plans (
  id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  code                  text NOT NULL,
  name                  text NOT NULL,
  is_paid               boolean NOT NULL,
  storage_quota_bytes   bigint NOT NULL,
  max_recording_seconds integer NOT NULL,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT plans_code_key UNIQUE (code),
  CONSTRAINT plans_code_format CHECK (code ~ '^[a-z][a-z0-9_]*$'),
  CONSTRAINT plans_quota_positive CHECK (storage_quota_bytes > 0),
  CONSTRAINT plans_max_recording_positive CHECK (max_recording_seconds > 0)
);
COMMENT ON TABLE public.plans IS 'Subscription plans and their limits; entitlements refer to a plan by code.';
INSERT INTO public.plans (code, name, is_paid, storage_quota_bytes, max_recording_seconds) VALUES
  ('free',   'Free',   false,   1073741824,   600),   -- 1 GiB, 10 minutes
  ('family', 'Family', true,   53687091200,  3600),   -- 50 GiB, 1 hour
  ('legacy', 'Legacy', true,  268435456000, 10800);   -- 250 GiB, 3 hours

CREATE TABLE public.plan_prices (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  stripe_price_id text NOT NULL,
  plan            text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT plan_prices_stripe_price_id_key UNIQUE (stripe_price_id),
  CONSTRAINT plan_prices_plan_fkey FOREIGN KEY (plan) REFERENCES public.plans (code)
    ON UPDATE CASCADE ON DELETE CASCADE
);
COMMENT ON TABLE public.plan_prices IS 'Stripe price id -> plan, filled per environment (test and live ids differ).';

CREATE TABLE public.families (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name       text NOT NULL,
  language   text NOT NULL DEFAULT 'en',
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT families_name_length CHECK (char_length(btrim(name)) BETWEEN 1 AND 100),
  CONSTRAINT families_language_valid CHECK (language IN ('en', 'es')),
  CONSTRAINT families_created_by_fkey FOREIGN KEY (created_by) REFERENCES auth.users (id) ON DELETE SET NULL
);
COMMENT ON TABLE public.families IS 'A family: the unit of membership, storage and billing.';
CREATE INDEX idx_families_created_by ON public.families (created_by, created_at DESC);

CREATE TABLE public.family_members (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  family_id  uuid NOT NULL,
  user_id    uuid NOT NULL,
  role       text NOT NULL,
  invite_id  uuid,
  joined_at  timestamptz NOT NULL DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT family_members_role_valid CHECK (role IN ('keeper', 'storyteller')),
  CONSTRAINT family_members_family_user_key UNIQUE (family_id, user_id),
  CONSTRAINT family_members_family_id_fkey FOREIGN KEY (family_id) REFERENCES public.families (id) ON DELETE CASCADE,
  CONSTRAINT family_members_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE
);
COMMENT ON TABLE public.family_members IS 'Who belongs to which family, as keeper or storyteller. Written only by the service role.';
CREATE INDEX idx_family_members_user ON public.family_members (user_id, family_id);

CREATE TABLE public.default_prompts (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  language   text NOT NULL,
  position   integer NOT NULL,
  text       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT default_prompts_language_valid CHECK (language IN ('en', 'es')),
  CONSTRAINT default_prompts_language_position_key UNIQUE (language, position)
);
COMMENT ON TABLE public.default_prompts IS 'Prompts every new family starts with, per language; copied into prompts by create-family.';
INSERT INTO public.default_prompts (language, position, text) VALUES
  ('en', 1, 'Where did you grow up, and what did your home sound like?'),
  ('en', 2, 'How did you meet the love of your life?'),
  ('en', 3, 'What is the best advice anyone ever gave you?'),
  ('en', 4, 'Tell us about a meal that reminds you of your childhood.'),
  ('en', 5, 'What was your first job, and what did it teach you?'),
  ('en', 6, 'What song takes you straight back to being young?'),
  ('en', 7, 'What do you want your grandchildren to know about you?'),
  ('es', 1, '¿Dónde creciste y cómo sonaba tu casa?'),
  ('es', 2, '¿Cómo conociste al amor de tu vida?'),
  ('es', 3, '¿Cuál es el mejor consejo que te han dado?'),
  ('es', 4, 'Cuéntanos de una comida que te recuerde tu infancia.'),
  ('es', 5, '¿Cuál fue tu primer trabajo y qué te enseñó?'),
  ('es', 6, '¿Qué canción te devuelve a tu juventud?'),
  ('es', 7, '¿Qué quieres que tus nietos sepan de ti?');

CREATE TABLE public.prompts (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  family_id  uuid NOT NULL,
  text       text NOT NULL,
  position   integer NOT NULL DEFAULT 0,
  is_default boolean NOT NULL DEFAULT false,
  created_by uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  deleted_at timestamptz DEFAULT NULL,
  CONSTRAINT prompts_text_length CHECK (char_length(btrim(text)) BETWEEN 1 AND 500),
  CONSTRAINT prompts_family_id_fkey FOREIGN KEY (family_id) REFERENCES public.families (id) ON DELETE CASCADE,
  CONSTRAINT prompts_created_by_fkey FOREIGN KEY (created_by) REFERENCES auth.users (id) ON DELETE SET NULL
);
COMMENT ON TABLE public.prompts IS 'Questions a family answers with recordings; defaults copied at family creation, more added by members.';
CREATE INDEX idx_prompts_family ON public.prompts (family_id, position) WHERE deleted_at IS NULL;

CREATE TABLE public.recordings (
  id                  uuid PRIMARY KEY,
  family_id           uuid NOT NULL,
  created_by          uuid,
  prompt_id           uuid,
  title               text,
  duration_seconds    double precision NOT NULL,
  content_type        text NOT NULL DEFAULT 'audio/mp4',
  audio_size_bytes    bigint NOT NULL,
  waveform_size_bytes bigint,
  size_bytes          bigint GENERATED ALWAYS AS (audio_size_bytes + coalesce(waveform_size_bytes, 0)) STORED,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  deleted_at          timestamptz DEFAULT NULL,
  CONSTRAINT recordings_duration_valid CHECK (duration_seconds > 0),
  CONSTRAINT recordings_title_length CHECK (title IS NULL OR char_length(title) <= 200),
  CONSTRAINT recordings_audio_size_valid CHECK (audio_size_bytes > 0),
  CONSTRAINT recordings_waveform_size_valid CHECK (waveform_size_bytes IS NULL OR waveform_size_bytes > 0),
  CONSTRAINT recordings_family_id_fkey FOREIGN KEY (family_id) REFERENCES public.families (id) ON DELETE RESTRICT,
  CONSTRAINT recordings_created_by_fkey FOREIGN KEY (created_by) REFERENCES auth.users (id) ON DELETE SET NULL,
  CONSTRAINT recordings_prompt_id_fkey FOREIGN KEY (prompt_id) REFERENCES public.prompts (id) ON DELETE SET NULL
);
COMMENT ON TABLE public.recordings IS 'Audio recordings (bytes in R2 at families/{family}/recordings/{id}.audio.m4a). Soft-deleted rows keep their bytes and count toward the quota.';
CREATE INDEX idx_recordings_family ON public.recordings (family_id, created_at DESC) WHERE deleted_at IS NULL;
CREATE INDEX idx_recordings_prompt ON public.recordings (prompt_id) WHERE deleted_at IS NULL;

CREATE TABLE public.invites (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  family_id  uuid NOT NULL,
  code_hmac  bytea NOT NULL,
  email      text,
  created_by uuid,
  expires_at timestamptz NOT NULL,
  max_uses   integer NOT NULL DEFAULT 1,
  use_count  integer NOT NULL DEFAULT 0,
  revoked_at timestamptz DEFAULT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT invites_code_hmac_key UNIQUE (code_hmac),
  CONSTRAINT invites_max_uses_valid CHECK (max_uses BETWEEN 1 AND 20),
  -- The use count can never pass max_uses, whatever races a redemption loses.
  CONSTRAINT invites_use_count_valid CHECK (use_count BETWEEN 0 AND max_uses),
  CONSTRAINT invites_family_id_fkey FOREIGN KEY (family_id) REFERENCES public.families (id) ON DELETE CASCADE,
  CONSTRAINT invites_created_by_fkey FOREIGN KEY (created_by) REFERENCES auth.users (id) ON DELETE SET NULL
);
COMMENT ON TABLE public.invites IS 'Invitation codes; only an HMAC of the normalised code under INVITE_CODE_SECRET is stored.';
CREATE INDEX idx_invites_family ON public.invites (family_id, created_at DESC) WHERE revoked_at IS NULL;

ALTER TABLE public.family_members ADD CONSTRAINT family_members_invite_id_fkey
  FOREIGN KEY (invite_id) REFERENCES public.invites (id) ON DELETE SET NULL;

CREATE TABLE public.entitlements (
  id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  family_id              uuid NOT NULL,
  plan                   text NOT NULL DEFAULT 'free',
  status                 text NOT NULL DEFAULT 'active',
  storage_used_bytes     bigint NOT NULL DEFAULT 0,
  stripe_customer_id     text,
  stripe_subscription_id text,
  current_period_end     timestamptz,
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT entitlements_family_id_key UNIQUE (family_id),
  CONSTRAINT entitlements_stripe_customer_id_key UNIQUE (stripe_customer_id),
  CONSTRAINT entitlements_status_valid CHECK (status IN ('active', 'trialing', 'past_due', 'unpaid',
    'paused', 'incomplete', 'incomplete_expired', 'canceled')),
  CONSTRAINT entitlements_storage_used_valid CHECK (storage_used_bytes >= 0),
  CONSTRAINT entitlements_family_id_fkey FOREIGN KEY (family_id) REFERENCES public.families (id) ON DELETE RESTRICT,
  CONSTRAINT entitlements_plan_fkey FOREIGN KEY (plan) REFERENCES public.plans (code) ON UPDATE CASCADE ON DELETE RESTRICT
);
COMMENT ON TABLE public.entitlements IS 'One per family: plan, subscription status and storage used. storage_used_bytes changes only through update_storage_quota().';

CREATE TABLE public.usage_ledger (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  family_id     uuid NOT NULL,
  -- No foreign key: the ledger outlives what it accounts for, and a SET NULL would be
  -- an UPDATE of an append-only row.
  recording_id  uuid,
  delta_bytes   bigint NOT NULL,
  balance_after bigint NOT NULL,
  operation     text NOT NULL,
  description   text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT usage_ledger_operation_valid CHECK (operation IN ('upload', 'delete', 'purge', 'adjustment')),
  CONSTRAINT usage_ledger_balance_valid CHECK (balance_after >= 0),
  CONSTRAINT usage_ledger_family_id_fkey FOREIGN KEY (family_id) REFERENCES public.families (id) ON DELETE RESTRICT
);
COMMENT ON TABLE public.usage_ledger IS 'Append-only audit trail of every storage change; written only by update_storage_quota(). No updated_at: rows never change.';
CREATE INDEX idx_usage_ledger_family ON public.usage_ledger (family_id, created_at DESC);

CREATE FUNCTION public.usage_ledger_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  RAISE EXCEPTION 'usage_ledger is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
COMMENT ON FUNCTION public.usage_ledger_append_only() IS 'Refuses UPDATE, DELETE and TRUNCATE of the ledger, for every role.';
CREATE TRIGGER usage_ledger_append_only BEFORE UPDATE OR DELETE ON public.usage_ledger
  FOR EACH ROW EXECUTE FUNCTION public.usage_ledger_append_only();
CREATE TRIGGER usage_ledger_no_truncate BEFORE TRUNCATE ON public.usage_ledger
  FOR EACH STATEMENT EXECUTE FUNCTION public.usage_ledger_append_only();

CREATE TABLE public.stripe_events (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  stripe_event_id   text NOT NULL,
  event_type        text NOT NULL,
  livemode          boolean NOT NULL DEFAULT false,
  stripe_created_at timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT stripe_events_stripe_event_id_key UNIQUE (stripe_event_id)
);
COMMENT ON TABLE public.stripe_events IS 'Stripe events already applied, so each takes effect at most once. Invisible to users.';

CREATE TABLE public.upload_reservations (
  id                  uuid PRIMARY KEY,
  family_id           uuid NOT NULL,
  user_id             uuid,
  prompt_id           uuid,
  audio_size_bytes    bigint NOT NULL,
  waveform_size_bytes bigint,
  duration_seconds    double precision NOT NULL,
  content_type        text NOT NULL DEFAULT 'audio/mp4',
  expires_at          timestamptz NOT NULL,
  finalized_at        timestamptz DEFAULT NULL,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT upload_reservations_audio_size_valid CHECK (audio_size_bytes BETWEEN 1 AND 524288000),
  CONSTRAINT upload_reservations_waveform_size_valid CHECK (waveform_size_bytes IS NULL OR waveform_size_bytes BETWEEN 1 AND 262144),
  CONSTRAINT upload_reservations_duration_valid CHECK (duration_seconds > 0),
  CONSTRAINT upload_reservations_family_id_fkey FOREIGN KEY (family_id) REFERENCES public.families (id) ON DELETE RESTRICT,
  CONSTRAINT upload_reservations_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE SET NULL,
  CONSTRAINT upload_reservations_prompt_id_fkey FOREIGN KEY (prompt_id) REFERENCES public.prompts (id) ON DELETE SET NULL
);
COMMENT ON TABLE public.upload_reservations IS 'Issued upload URLs: declared sizes, duration and prompt. Never deleted: an unfinalized one whose object exists is an orphan operations can finalize.';
CREATE INDEX idx_upload_reservations_open ON public.upload_reservations (family_id, expires_at) WHERE finalized_at IS NULL;

CREATE TABLE public.rate_limits (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  key          text NOT NULL,
  window_start timestamptz NOT NULL,
  hits         integer NOT NULL DEFAULT 0,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT rate_limits_key_window_key UNIQUE (key, window_start),
  CONSTRAINT rate_limits_hits_valid CHECK (hits >= 0)
);
COMMENT ON TABLE public.rate_limits IS 'Fixed-window counters (key = action and subject), incremented atomically by rate_limit_take().';

-- updated_at on every table that has it.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['plans', 'plan_prices', 'families', 'family_members', 'default_prompts', 'prompts',
    'recordings', 'invites', 'entitlements', 'stripe_events', 'upload_reservations', 'rate_limits'] LOOP
    EXECUTE format('CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.%I
                    FOR EACH ROW EXECUTE FUNCTION public.trigger_set_updated_at()', t);
  END LOOP;
END
$$;
