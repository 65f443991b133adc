// Encodes Sparkplug B payloads with Eclipse Tahu's own encoder (npm sparkplug-payload), for
// floorsight's tests: reads a JSON array of payload objects (Tahu's form: timestamp, seq,
// metrics [{name, alias, timestamp, type, value}]) on stdin, writes a JSON array of hex strings.
// A payload with "compress": "DEFLATE" or "GZIP" is compressed by Tahu's client
// (sparkplug-client's compressPayload: uuid SPBV1.0_COMPRESSED, the algorithm metric, the body).
"use strict";
const sparkplug = require("sparkplug-payload").get("spBv1.0");

let client = null;
function compressor() {
  if (client === null) {
    // the client's compression needs no broker: it is never connected (its connect fails)
    client = require("sparkplug-client").newClient({
      serverUrl: "mqtt://127.0.0.1:9",
      username: "",
      password: "",
      groupId: "g",
      edgeNode: "e",
      clientId: "encode",
      mqttOptions: { reconnectPeriod: 0 },
    });
    client.on("error", () => {});
  }
  return client;
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const payloads = JSON.parse(input);
  const out = payloads.map((p) => {
    let encoded = sparkplug.encodePayload(p);
    if (p.compress) {
      const c = compressor();
      encoded = sparkplug.encodePayload(c.compressPayload(encoded, { algorithm: p.compress }));
    }
    return Buffer.from(encoded).toString("hex");
  });
  // exit once written (a pipe's write is asynchronous): a compressing client would keep
  // the process alive, trying to connect
  process.stdout.write(JSON.stringify(out), () => process.exit(0));
});
