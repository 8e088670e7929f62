/**
 * Typed calls of the Stories From the Sun functions through supabase-js.
 *
 * The types come from `./api.d.ts`, generated from api/openapi.json, which the Rust
 * types generate: a field renamed in Rust fails `tsc` wherever the app used it.
 *
 *   const result = await invoke(supabase, "create-family", { name: "The Garcias" });
 *   if (result.ok) result.data.family.id;                // typed by the function's name
 *   else if (result.error.code === "RATE_LIMIT") …;       // one of that function's codes
 */
import { FunctionsHttpError, type SupabaseClient } from "@supabase/supabase-js";
import type { components, operations } from "./api.js";

export type { components, operations, paths } from "./api.js";

/** The contract's error codes. */
export type ErrorCode = components["schemas"]["ErrorCode"];

/** The functions the app calls (the webhook is Stripe's). */
export type FunctionName = Exclude<keyof operations, "stripe-webhook" | `${string}-get`>;

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

/** A call's outcome: its data, or one of its error codes (`NETWORK_ERROR` when no
 * answer arrived at all: offline, DNS, a dropped connection). */
export type Result<F extends FunctionName> =
  | { ok: true; data: Output<F> }
  | { ok: false; status: number; error: { code: ErrorCodeOf<F> | "NETWORK_ERROR"; message: string } };

/** Calls `name` with `body` as the signed-in user of `supabase`. Never throws for an
 * answer the contract names: the error is a value, discriminated on its code. */
export async function invoke<F extends FunctionName>(
  supabase: Pick<SupabaseClient, "functions">,
  name: F,
  body: Input<F>,
): Promise<Result<F>> {
  const { data, error } = await supabase.functions.invoke<{ data: Output<F> }>(name, {
    body: body as Record<string, unknown>,
  });
  if (!error && data) return { ok: true, data: data.data };
  if (error instanceof FunctionsHttpError) {
    const response = error.context as Response;
    const envelope = (await response.json().catch(() => null)) as
      | { error?: { code: ErrorCodeOf<F>; message: string } }
      | null;
    if (envelope?.error) return { ok: false, status: response.status, error: envelope.error };
    return { ok: false, status: response.status, error: { code: "NETWORK_ERROR", message: response.statusText } };
  }
  return { ok: false, status: 0, error: { code: "NETWORK_ERROR", message: String(error?.message ?? error) } };
}
