// The dashboard's only way to the server: jobdock's JSON API, with the
// user's token (kept in this tab's sessionStorage, sent as a Bearer header,
// never as a cookie) or, with mutual TLS, the browser's client certificate.
// The API decides what the user may see and do; the page only asks.

const TOKEN_KEY = "jobdock.token";

/** The API token of this tab, if the user gave one. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answer of the API: {"error": {"code", "message", "field"}}. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** The server wants credentials (none given, or the token was refused). */
export class AuthNeeded extends ApiError {}

async function request(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  const bearer = token();
  if (bearer) headers.Authorization = "Bearer " + bearer;
  const init = { method, headers, signal, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.ok) return response;
  let error = { code: "http_error", message: `${response.status} ${response.statusText}` };
  try {
    error = (await response.json()).error || error;
  } catch {
    // Not jobdock's JSON (a proxy's page): keep the status line.
  }
  const Kind = response.status === 401 ? AuthNeeded : ApiError;
  throw new Kind(response.status, error.code, error.message, error.field);
}

/** GET a JSON document. */
export async function get(path, signal) {
  return (await request(path, { signal })).json();
}

/** POST (a JSON body, if given); the answer's JSON, or null for 204. */
export async function post(path, body) {
  const response = await request(path, { method: "POST", body });
  return response.status === 204 ? null : response.json();
}

/** A query string from an object; arrays repeat their key; empty values are left out. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") search.append(key, String(item));
    }
  }
  const text = search.toString();
  return text ? "?" + text : "";
}

export function jobPath(id, rest = "") {
  return "/v1/jobs/" + encodeURIComponent(id) + rest;
}

let logTimestamps = null;

/** Whether this server's logs route takes ``timestamps=true`` (its OpenAPI
 * document says so; a server from before it does not). */
export function offersLogTimestamps() {
  logTimestamps ||= get("/openapi.json")
    .then((document) => {
      const route = ((document.paths || {})["/v1/jobs/{job_id}/logs"] || {}).get || {};
      return (route.parameters || []).some((parameter) => parameter.name === "timestamps");
    })
    .catch(() => false);
  return logTimestamps;
}

/** Follow one attempt's output as the job writes it, from its start:
 * ``onOutput(stream, text)`` for each piece ("stdout" or "stderr"), until
 * the attempt ends (or ``signal`` aborts). It reads the multiplexed format,
 * which frames each piece with its stream (8-byte header: stream, 3 zero
 * bytes, big-endian length). With ``timestamps``, each line starts with
 * its arrival time and a space. */
export async function followLog(id, attempt, onOutput, signal, timestamps = false) {
  const path = jobPath(
    id,
    "/logs" + query({ attempt, follow: "true", format: "multiplexed", timestamps: timestamps ? "true" : "" }),
  );
  const reader = (await request(path, { signal })).body.getReader();
  const decoders = { 1: new TextDecoder(), 2: new TextDecoder() };
  let pending = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    pending = concat(pending, value);
    while (pending.length >= 8) {
      const length = new DataView(pending.buffer, pending.byteOffset, 8).getUint32(4);
      if (pending.length < 8 + length) break;
      const stream = pending[0] === 2 ? 2 : 1;
      const text = decoders[stream].decode(pending.subarray(8, 8 + length), { stream: true });
      onOutput(stream === 2 ? "stderr" : "stdout", text);
      pending = pending.slice(8 + length);
    }
  }
}

function concat(a, b) {
  if (a.length === 0) return b;
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** One attempt's whole output (both streams, in order) as a Blob. */
export async function logBlob(id, attempt) {
  return (await request(jobPath(id, "/logs" + query({ attempt })))).blob();
}
