/**
 * Typed calls of the Stories From the Sun functions through supabase-js.
 *
 * The types come from `./api.d.ts`, generated from api/openapi.json, which the Rust
 * types generate: a field renamed in Rust fails `tsc` wherever the app used it.
 *
 *   const functions = functionsClient(supabase, FUNCTIONS_URL);   // the deployed API
 *   const result = await invoke(functions, "create-family", { name: "The Garcias" });
 *   if (result.ok) result.data.family.id;                // typed by the function's name
 *   else if (result.error.code === "RATE_LIMIT") …;       // one of that function's codes
 */
import { FunctionsClient } from "@supabase/functions-js";
import { FunctionsFetchError, FunctionsHttpError, FunctionsRelayError, type SupabaseClient } from "@supabase/supabase-js";
import type { components, operations } from "./api.js";

export type { components, operations, paths } from "./api.js";
export type { Database } from "./database.js";

/** The contract's error codes. */
export type ErrorCode = components["schemas"]["ErrorCode"];

/** The functions the app calls (the webhook is Stripe's; `health` is a plain GET). */
export type FunctionName = Exclude<keyof operations, "stripe-webhook" | "health" | `${string}-get`>;

type Json<R> = R extends { content: { "application/json": infer Body } } ? Body : never;
type Responses<F extends FunctionName> = operations[F]["responses"];
type ErrorStatus<F extends FunctionName> = Exclude<keyof Responses<F>, 200>;
type CodeIn<R> = Json<R> extends { error?: infer E } ? (E extends { code?: infer C } ? Exclude<C, undefined> : never) : never;

/** What a function takes. */
export type Input<F extends FunctionName> =
  operations[F]["requestBody"] extends { content: { "application/json": infer Body } } ? Body : never;

/** What a function answers, inside the envelope's `data`. */
export type Output<F extends FunctionName> = Json<Responses<F>[200]> extends { data: infer D } ? D : never;

/** The error codes a function answers with. */
export type ErrorCodeOf<F extends FunctionName> = { [S in ErrorStatus<F>]: CodeIn<Responses<F>[S]> }[ErrorStatus<F>];

/** A failed call: the function's code, or `NETWORK_ERROR` when no answer of ours
 * arrived (offline, DNS, a dropped connection, or a gateway's own 429/5xx without our
 * envelope). `requestId` is what to quote (`x-request-id`); `retryAfterSeconds` comes
 * with a 429; `retryable` says whether the same call may simply be made again later. */
export type Failure<F extends FunctionName> = {
  ok: false;
  status: number;
  error: { code: ErrorCodeOf<F> | "NETWORK_ERROR"; message: string };
  requestId: string | null;
  retryAfterSeconds: number | null;
  retryable: boolean;
};

/** A call's outcome: its data, or a failure discriminated on its code. */
export type Result<F extends FunctionName> = { ok: true; data: Output<F> } | Failure<F>;

/** Something with a `functions.invoke` of supabase-js: a Supabase client (the local
 * runner sits at its URL's `/functions/v1`), or {@link functionsClient}'s. */
export type Functions = Pick<SupabaseClient, "functions">;

/**
 * The functions at `functionsUrl` (the deployed API's `FunctionsUrl`, e.g.
 * `https://api.sunstories.app/functions/v1`), called as the user signed in to
 * `supabase`: each call carries the session's current access token, refreshed or not.
 */
export function functionsClient(supabase: Pick<SupabaseClient, "auth">, functionsUrl: string): Functions {
  const withToken: typeof fetch = async (input, init) => {
    const { data } = await supabase.auth.getSession();
    const headers = new Headers(init?.headers);
    if (data.session) headers.set("Authorization", `Bearer ${data.session.access_token}`);
    return fetch(input, { ...init, headers });
  };
  return { functions: new FunctionsClient(functionsUrl.replace(/\/+$/, ""), { customFetch: withToken }) };
}

/** Statuses worth retrying as they are: the limit's window, or a dependency down. */
const RETRYABLE = new Set([429, 502, 503, 504]);

/** Calls `name` with `body` as the signed-in user. Never throws for an answer the
 * contract names: the error is a value, discriminated on its code. */
export async function invoke<F extends FunctionName>(functions: Functions, name: F, body: Input<F>): Promise<Result<F>> {
  const { data, error } = await functions.functions.invoke<{ data: Output<F> }>(name, {
    body: body as Record<string, unknown>,
  });
  if (!error && data) return { ok: true, data: data.data };
  if (error instanceof FunctionsHttpError || error instanceof FunctionsRelayError) {
    const response = error.context as Response;
    const requestId = response.headers.get("x-request-id");
    const retryAfter = Number.parseInt(response.headers.get("retry-after") ?? "", 10);
    const retryAfterSeconds = Number.isFinite(retryAfter) ? retryAfter : null;
    const envelope = (await response.json().catch(() => null)) as
      | { error?: { code: ErrorCodeOf<F>; message: string } }
      | null;
    const retryable = RETRYABLE.has(response.status) || response.status >= 500;
    if (envelope?.error) {
      return { ok: false, status: response.status, error: envelope.error, requestId, retryAfterSeconds, retryable };
    }
    // Not our answer: a gateway's throttle or failure (no envelope, no CORS headers).
    const message = `${response.status} ${response.statusText}`.trim();
    return { ok: false, status: response.status, error: { code: "NETWORK_ERROR", message }, requestId, retryAfterSeconds, retryable: true };
  }
  const message = error instanceof FunctionsFetchError ? String(error.context ?? error.message) : String(error?.message ?? error);
  return { ok: false, status: 0, error: { code: "NETWORK_ERROR", message }, requestId: null, retryAfterSeconds: null, retryable: true };
}
