// A node-opcua server with an address space of its own, for floorsight's OPC-UA tests.
//
// It is what a press shop's OPC-UA gateway might look like, and none of floorsight's names:
// namespace urn:acme:press-shop, Objects/Site/Hall2/Press07 and Press08, each with
//   OilTemp (Double, AnalogItem, EngineeringUnits degC), RamForce (Float, AnalogItem, kN),
//   StrokeCount (UInt32), State (Int32: 0 stopped, 1 running, 2 fault),
//   HoldRequest (Boolean, writable) and AlarmMessage (String, writable),
// with string node ids such as "s=Press07.OilTemp".
//
// Security as a careful plant sets it: only Basic256Sha256 with SignAndEncrypt, no anonymous
// login, one user. A client certificate is trusted only when it is in <pki>/trusted/certs
// (an unknown one lands in <pki>/rejected and its channel is refused).
//
// Usage: node server.js --port P --pki DIR --user NAME [--host 127.0.0.1] [--tick-ms 100]
// The user's password comes from the environment variable NODEOPCUA_TEST_PASSWORD (never argv).
// Prints "ready <endpoint url>" on stdout once listening; stops on SIGTERM or SIGINT.
//
// An admin trusts a client certificate on stdin: the line "trust <path to DER or PEM>" moves it
// into <pki>/trusted/certs with node-opcua's own CertificateManager.trustCertificate (as its
// admin tools do; node-opcua keeps a certificate it has rejected once in memory, so moving the
// file by hand only counts after a restart), and answers "trusted <SHA-1 thumbprint>".
//
// Values change on a timer, deterministically from the tick number n (n = 1, 2, ...), with
// SourceTimestamp set to the time of the tick:
//   OilTemp     = base + (n % 20) * 0.5     base 40.0 for Press07, 50.0 for Press08
//   RamForce    = base + (n % 10) * 2.0     base 800.0 for Press07, 900.0 for Press08
//   StrokeCount = n
//   State       = 1 (running)
"use strict";

const path = require("path");
const readline = require("readline");
const { readCertificate, makeSHA1Thumbprint } = require("node-opcua-crypto");
const {
    OPCUAServer,
    OPCUACertificateManager,
    SecurityPolicy,
    MessageSecurityMode,
    DataType,
    Variant,
    StatusCodes,
    standardUnits,
    makeEUInformation,
} = require("node-opcua");

const NAMESPACE_URI = "urn:acme:press-shop";
const MACHINES = { Press07: { oil: 40.0, force: 800.0 }, Press08: { oil: 50.0, force: 900.0 } };

function options(argv) {
    const out = { host: "127.0.0.1", tickMs: 100 };
    for (let i = 0; i < argv.length; i += 2) {
        const [key, value] = [argv[i], argv[i + 1]];
        if (key === "--port") out.port = Number(value);
        else if (key === "--pki") out.pki = value;
        else if (key === "--user") out.user = value;
        else if (key === "--host") out.host = value;
        else if (key === "--tick-ms") out.tickMs = Number(value);
        else throw new Error(`unknown option ${key}`);
    }
    if (!out.port || !out.pki || !out.user) {
        throw new Error("usage: node server.js --port P --pki DIR --user NAME");
    }
    return out;
}

function addMachine(namespace, hall, name, base) {
    const press = namespace.addObject({ organizedBy: hall, browseName: name });
    const id = (sensor) => `s=${name}.${sensor}`;
    const variables = {
        OilTemp: namespace.addAnalogDataItem({
            componentOf: press,
            browseName: "OilTemp",
            nodeId: id("OilTemp"),
            dataType: "Double",
            engineeringUnitsRange: { low: 0, high: 150 },
            engineeringUnits: standardUnits.degree_celsius,
        }),
        RamForce: namespace.addAnalogDataItem({
            componentOf: press,
            browseName: "RamForce",
            nodeId: id("RamForce"),
            dataType: "Float",
            engineeringUnitsRange: { low: 0, high: 2000 },
            engineeringUnits: makeEUInformation("kN", "kN", "kilonewton"),
        }),
        StrokeCount: namespace.addVariable({
            componentOf: press,
            browseName: "StrokeCount",
            nodeId: id("StrokeCount"),
            dataType: "UInt32",
        }),
        State: namespace.addVariable({
            componentOf: press,
            browseName: "State",
            nodeId: id("State"),
            dataType: "Int32",
        }),
    };
    const writable = { accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite" };
    const hold = namespace.addVariable({
        componentOf: press,
        browseName: "HoldRequest",
        nodeId: id("HoldRequest"),
        dataType: "Boolean",
        ...writable,
    });
    hold.setValueFromSource({ dataType: DataType.Boolean, value: false });
    const alarm = namespace.addVariable({
        componentOf: press,
        browseName: "AlarmMessage",
        nodeId: id("AlarmMessage"),
        dataType: "String",
        ...writable,
    });
    alarm.setValueFromSource({ dataType: DataType.String, value: "" });

    return (n, now) => {
        const set = (variable, dataType, value) =>
            variable.setValueFromSource(new Variant({ dataType, value }), StatusCodes.Good, now);
        set(variables.OilTemp, DataType.Double, base.oil + (n % 20) * 0.5);
        set(variables.RamForce, DataType.Float, base.force + (n % 10) * 2.0);
        set(variables.StrokeCount, DataType.UInt32, n);
        set(variables.State, DataType.Int32, 1);
    };
}

async function main() {
    const opts = options(process.argv.slice(2));
    const password = process.env.NODEOPCUA_TEST_PASSWORD;
    if (!password) throw new Error("NODEOPCUA_TEST_PASSWORD is not set");

    const serverCertificateManager = new OPCUACertificateManager({
        rootFolder: path.resolve(opts.pki),
        automaticallyAcceptUnknownCertificate: false,
    });
    await serverCertificateManager.initialize();

    const server = new OPCUAServer({
        port: opts.port,
        host: opts.host,
        hostname: opts.host,
        resourcePath: "/acme",
        serverCertificateManager,
        securityPolicies: [SecurityPolicy.Basic256Sha256],
        securityModes: [MessageSecurityMode.SignAndEncrypt],
        allowAnonymous: false,
        userManager: { isValidUser: (user, pass) => user === opts.user && pass === password },
        buildInfo: { productName: "acme press-shop gateway (node-opcua test server)" },
    });
    await server.initialize();

    const addressSpace = server.engine.addressSpace;
    const namespace = addressSpace.registerNamespace(NAMESPACE_URI);
    const site = namespace.addFolder(addressSpace.rootFolder.objects, { browseName: "Site" });
    const hall = namespace.addFolder(site, { browseName: "Hall2" });
    const machines = Object.entries(MACHINES).map(([name, base]) =>
        addMachine(namespace, hall, name, base),
    );
    let n = 0;
    const tick = () => {
        n += 1;
        const now = new Date();
        for (const update of machines) update(n, now);
    };
    tick();
    const timer = setInterval(tick, opts.tickMs);

    await server.start();
    process.stdout.write(`ready ${server.getEndpointUrl()}\n`);

    readline.createInterface({ input: process.stdin }).on("line", async (line) => {
        const [command, file] = line.trim().split(/\s+/, 2);
        try {
            if (command !== "trust" || !file) throw new Error(`unknown command ${line.trim()}`);
            const certificate = readCertificate(file);
            await serverCertificateManager.trustCertificate(certificate);
            const thumbprint = makeSHA1Thumbprint(certificate).toString("hex").toUpperCase();
            process.stdout.write(`trusted ${thumbprint}\n`);
        } catch (err) {
            process.stdout.write(`error ${err.message}\n`);
        }
    });

    let stopping = false;
    const stop = async () => {
        if (stopping) return;
        stopping = true;
        clearInterval(timer);
        await server.shutdown(0);
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((err) => {
    process.stderr.write(`node-opcua test server failed: ${err.stack || err}\n`);
    process.exit(1);
});
