// The typed invoke against the local runner, with the real supabase-js: create a family,
// invite, redeem, reserve an upload; then, as deployed, the functions on a URL of their
// own, called with the signed-in session's current token. scripts/check-contract.sh
// starts the runner (with its Supabase Auth stand-in) and sets FUNCTIONS_URL,
// KEEPER_TOKEN and STORYTELLER_TOKEN.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import WebSocket from "ws";
import { functionsClient, invoke, type Database, type ErrorCodeOf } from "../src/index.js";

const url = process.env.FUNCTIONS_URL;
const skip = url ? false : "set FUNCTIONS_URL, KEEPER_TOKEN and STORYTELLER_TOKEN (scripts/check-contract.sh does)";

function signedIn(token: string | undefined) {
  // The app's client: the project URL, its anon key, and the user's access token.
  return createClient(url ?? "http://127.0.0.1:54321", "anon-key", {
    auth: { persistSession: false, autoRefreshToken: false },
    // Node 20 has no WebSocket of its own for supabase-js's Realtime client.
    realtime: { transport: WebSocket as never },
    global: { headers: { Authorization: `Bearer ${token}` } },
  });
}

test("a keeper creates a family, invites, a storyteller joins, and an upload is reserved", { skip }, async () => {
  const keeper = signedIn(process.env.KEEPER_TOKEN);
  const storyteller = signedIn(process.env.STORYTELLER_TOKEN);

  const family = await invoke(keeper, "create-family", { name: "The Okonkwos", language: "en" });
  assert.ok(family.ok, JSON.stringify(family));
  assert.equal(family.data.role, "keeper");
  assert.equal(family.data.entitlement.plan, "free");
  const familyId = family.data.family.id;

  const invite = await invoke(keeper, "create-invite", { familyId, maxUses: 2 });
  assert.ok(invite.ok, JSON.stringify(invite));
  assert.match(invite.data.invite.code, /^[A-Z]{3}-[A-Z]{3}-[A-Z]{3}$/);

  const joined = await invoke(storyteller, "redeem-invite", { code: invite.data.invite.code.toLowerCase() });
  assert.ok(joined.ok, JSON.stringify(joined));
  assert.deepEqual([joined.data.familyId, joined.data.role, joined.data.alreadyMember], [familyId, "storyteller", false]);

  // The app hashes what it will send: the URL binds that SHA-256, and the bucket refuses
  // other bytes.
  const audio = Buffer.alloc(4096, 7);
  const sha256 = createHash("sha256").update(audio).digest("base64");
  const upload = await invoke(storyteller, "get-signed-upload-url", {
    familyId,
    durationSeconds: 12.5,
    sizeBytes: audio.length,
    sha256,
    contentType: "audio/mp4",
  });
  assert.ok(upload.ok, JSON.stringify(upload));
  assert.deepEqual(upload.data.upload.headers, {
    "Content-Type": "audio/mp4",
    "Content-Length": "4096",
    "If-None-Match": "*",
    "x-amz-checksum-sha256": sha256,
  });
});

test("errors are values discriminated on the function's codes", { skip }, async () => {
  const storyteller = signedIn(process.env.STORYTELLER_TOKEN);
  const result = await invoke(storyteller, "redeem-invite", { code: "ZZZ-ZZZ-ZZZ" });
  assert.ok(!result.ok);
  const code: ErrorCodeOf<"redeem-invite"> | "NETWORK_ERROR" = result.error.code;
  assert.equal(code, "NOT_FOUND");
  assert.equal(result.status, 404);

  const anonymous = signedIn("not-a-token");
  const refused = await invoke(anonymous, "create-family", { name: "Nobody" });
  assert.ok(!refused.ok);
  assert.equal(refused.error.code, "UNAUTHORIZED");
});

/** The deployed API as the app meets it: the functions on another origin than the
 * Supabase URL. A proxy to the runner that records each call's Authorization, and can
 * answer as a throttling gateway would (429, no envelope). */
async function functionsElsewhere(runner: string) {
  const seen: string[] = [];
  const gateway = { throttle: false };
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    seen.push(req.headers.authorization ?? "");
    if (gateway.throttle) {
      res.writeHead(429, { "content-type": "text/plain" }).end("Too Many Requests");
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === "string" && name !== "host" && name !== "content-length") headers.set(name, value);
    }
    const body = req.method === "GET" || req.method === "HEAD" ? undefined : Buffer.concat(chunks);
    const answer = await fetch(`${runner}${req.url}`, { method: req.method, headers, body });
    res.writeHead(answer.status, Object.fromEntries(answer.headers)).end(Buffer.from(await answer.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/functions/v1`, seen, gateway, close: () => server.close() };
}

test("functionsClient calls functions on their own URL with the session's current token", { skip }, async () => {
  const supabase = createClient(url ?? "", "anon-key", {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket as never },
  });
  const elsewhere = await functionsElsewhere(url ?? "");
  try {
    const signIn = await supabase.auth.signInWithPassword({ email: `refresh-${Date.now()}@example.com`, password: "local" });
    assert.ifError(signIn.error);
    const first = signIn.data.session!.access_token;
    const functions = functionsClient(supabase, elsewhere.url);
    assert.notEqual(new URL(elsewhere.url).port, new URL(url ?? "").port, "not the Supabase URL");

    const made = await invoke(functions, "create-family", { name: "The Refreshers" });
    assert.ok(made.ok, JSON.stringify(made));
    assert.equal(elsewhere.seen.at(-1), `Bearer ${first}`);

    // The session refreshes mid-use: the next call carries the new token.
    const refreshed = await supabase.auth.refreshSession();
    assert.ifError(refreshed.error);
    const second = refreshed.data.session!.access_token;
    assert.notEqual(second, first);
    const again = await invoke(functions, "create-family", { name: "The Refreshers, again" });
    assert.ok(again.ok, JSON.stringify(again));
    assert.equal(elsewhere.seen.at(-1), `Bearer ${second}`);

    // Our 429: the code, the request id to quote and when to retry.
    let limited = again as Awaited<ReturnType<typeof invoke<"create-family">>>;
    for (let i = 0; i < 12 && limited.ok; i++) {
      limited = await invoke(functions, "create-family", { name: `The Many ${i}` });
    }
    assert.ok(!limited.ok, "create-family allows 10 a day");
    assert.equal(limited.status, 429);
    assert.equal(limited.error.code, "RATE_LIMIT");
    assert.match(limited.requestId ?? "", /^[0-9a-f-]{36}$/);
    assert.ok((limited.retryAfterSeconds ?? 0) > 0, JSON.stringify(limited));
    assert.equal(limited.retryable, true);

    // A gateway's own throttle: no envelope, still an error the app can retry.
    elsewhere.gateway.throttle = true;
    const throttled = await invoke(functions, "create-family", { name: "Throttled" });
    assert.ok(!throttled.ok);
    assert.deepEqual(
      [throttled.status, throttled.error.code, throttled.retryable, throttled.requestId],
      [429, "NETWORK_ERROR", true, null],
    );
  } finally {
    elsewhere.close();
  }
});

// Compile-time only: the types follow the function's name.
export function typesFollowTheName(client: ReturnType<typeof signedIn>) {
  // @ts-expect-error `nombre` is not an input of create-family
  void invoke(client, "create-family", { nombre: "x" });
  // @ts-expect-error a family id is required to reserve an upload
  void invoke(client, "get-signed-upload-url", { durationSeconds: 1, sizeBytes: 1, sha256: "" });
  // @ts-expect-error RATE_LIMIT is not a code of get-signed-playback-url
  const code: ErrorCodeOf<"get-signed-playback-url"> = "RATE_LIMIT";
  // ...while NOT_FOUND and the frame's own codes are.
  const codes: ErrorCodeOf<"get-signed-playback-url">[] = ["NOT_FOUND", "UNAUTHORIZED", "SERVICE_UNAVAILABLE"];
  return [code, ...codes];
}

// Compile-time only: the app's direct reads are typed by the database's schema.
export function readsFollowTheSchema(client: SupabaseClient<Database>) {
  // @ts-expect-error there is no such table
  void client.from("recording").select("*");
  return client.from("recordings").select("id, title, duration_seconds").is("deleted_at", null);
}
