// An edge node built on Eclipse Tahu's own Sparkplug client (npm sparkplug-client), for
// floorsight's end-to-end tests. Usage: node edge_node.js PLAN.json
// PLAN: {serverUrl, groupId, edgeNode, node: [metrics], devices: {id: [metrics]},
//        data: [{device, timestamp, metrics, compress?} | {pause: true}], deathOf: [device ids]}
// On connect it publishes NBIRTH (the client adds seq and bdSeq), each DBIRTH, every DDATA (or
// NDATA when device is null) in order, a DDEATH per deathOf, then stops with its NDEATH. At a
// {pause: true} it prints "paused" and waits for a line on stdin, in the same MQTT session (no
// rebirth).
"use strict";
const fs = require("fs");
const readline = require("readline");
const sparkplug = require("sparkplug-client");

const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const client = sparkplug.newClient({
  serverUrl: plan.serverUrl,
  username: "",
  password: "",
  groupId: plan.groupId,
  edgeNode: plan.edgeNode,
  clientId: `tahu-${plan.edgeNode}`,
  publishDeath: true,
  version: "spBv1.0",
});
let done = false;
client.on("error", (e) => {
  console.error(`edge node: ${e}`);
  process.exit(1);
});
// lines on stdin, each one let a pause go on
const lines = [];
let waiting = null;
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (waiting) {
    const resume = waiting;
    waiting = null;
    resume(line);
  } else lines.push(line);
});
const nextLine = () =>
  new Promise((resolve) => {
    if (lines.length) resolve(lines.shift());
    else waiting = resolve;
  });
client.on("birth", async () => {
  if (done) return;
  done = true;
  const now = Date.now();
  client.publishNodeBirth({ timestamp: now, metrics: plan.node });
  for (const [id, metrics] of Object.entries(plan.devices)) {
    client.publishDeviceBirth(id, { timestamp: now, metrics });
  }
  for (const d of plan.data) {
    if (d.pause) {
      console.log("paused");
      await nextLine();
      continue;
    }
    const payload = { timestamp: d.timestamp, metrics: d.metrics };
    // the client's own compression (DEFLATE or GZIP) when the plan asks for it
    const options = d.compress ? { compress: true, algorithm: d.compress } : undefined;
    if (d.device) client.publishDeviceData(d.device, payload, options);
    else client.publishNodeData(payload, options);
  }
  for (const id of plan.deathOf || []) {
    client.publishDeviceDeath(id, { timestamp: Date.now() });
  }
  // the mqtt client flushes what it queued before it closes
  setTimeout(() => client.stop(), 200);
  setTimeout(() => process.exit(0), 1000);
});
