// Encodes Sparkplug B payloads with Eclipse Tahu's own encoder (npm sparkplug-payload), for
// floorsight's tests: reads a JSON array of payload objects (Tahu's form: timestamp, seq,
// metrics [{name, alias, timestamp, type, value}]) on stdin, writes a JSON array of hex strings.
"use strict";
const sparkplug = require("sparkplug-payload").get("spBv1.0");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const payloads = JSON.parse(input);
  const out = payloads.map((p) => Buffer.from(sparkplug.encodePayload(p)).toString("hex"));
  process.stdout.write(JSON.stringify(out));
});
