// The typed invoke against the local runner, with the real supabase-js: create a family,
// invite, redeem, reserve an upload. scripts/check-contract.sh starts the runner and
// sets FUNCTIONS_URL, KEEPER_TOKEN and STORYTELLER_TOKEN.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";
import { invoke, type ErrorCodeOf } from "../src/index.js";

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
