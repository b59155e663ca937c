// A real requester of the 2026-07-28 tasks extension (io.modelcontextprotocol/tasks):
// the npm package @modelcontextprotocol/ext-tasks over the TypeScript SDK's v2
// client (@modelcontextprotocol/client), against our server over stdio or HTTP.
//
// Usage: node ext_tasks_client.mjs <mode> ; environment:
//   NODE_MODULES     the folder holding @modelcontextprotocol/{client,ext-tasks}
//   SERVER_COMMAND   the server's command; SERVER_ENV a JSON object of its env
//   SERVER_URL       instead: the streamable HTTP endpoint of a running server
//   TOOL_ARGUMENTS   JSON arguments of generate_image
// Modes: "run" (a task to its end, then the same call without the extension)
// and "cancel" (cancel once the task reports a step; then tasks/get).
// Prints one JSON object per line: {"event": ..., ...}.
import { pathToFileURL } from "node:url";

const modules = process.env.NODE_MODULES;
const load = (path) => import(pathToFileURL(`${modules}/${path}`).href);
const sdk = await load("@modelcontextprotocol/client/dist/index.mjs");
const { StdioClientTransport } = await load("@modelcontextprotocol/client/dist/stdio.mjs");
const tasks = await load("@modelcontextprotocol/ext-tasks/dist/client/index.js");

const VERSION = "2026-07-28";
const EXTENSION = "io.modelcontextprotocol/tasks";
const mode = process.argv[2];
const args = JSON.parse(process.env.TOOL_ARGUMENTS);
const say = (event, data) => console.log(JSON.stringify({ event, ...data }));

const transport = () =>
  process.env.SERVER_URL
    ? new sdk.StreamableHTTPClientTransport(new URL(process.env.SERVER_URL))
    : new StdioClientTransport({
        command: process.env.SERVER_COMMAND,
        args: ["serve"],
        env: JSON.parse(process.env.SERVER_ENV),
        stderr: "inherit",
      });

const clientInfo = { name: "ext-tasks-test", version: "1.0.0" };
const clientCapabilities = { extensions: { [EXTENSION]: {} } };
const client = new sdk.Client(clientInfo, {
  capabilities: clientCapabilities,
  versionNegotiation: { mode: { pin: VERSION } },
});
const channel = transport();
await client.connect(channel);
say("connected", {
  era: client.getProtocolEra(),
  extensions: client.getServerCapabilities()?.extensions ?? null,
});

// ext-tasks sends task wire shapes (a tools/call answered by resultType
// "task", tasks/*) through a raw request path the host provides: the SDK
// client rejects a result type it does not know. Here that path is the
// client's own transport, whose answers to our ids are taken before the
// client sees them.
const pending = new Map();
let next = 0;
const delivered = channel.onmessage;
channel.onmessage = (message, extra) => {
  const answer = message?.id !== undefined ? pending.get(message.id) : undefined;
  if (answer !== undefined && ("result" in message || "error" in message)) {
    pending.delete(message.id);
    answer(message);
  } else delivered.call(channel, message, extra);
};
const rawDispatch = (request, options = {}) =>
  new Promise((resolve, reject) => {
    const id = `ext-tasks-${next++}`;
    pending.set(id, (message) =>
      resolve(
        "error" in message
          ? { kind: "error", error: message.error }
          : { kind: "result", result: message.result },
      ),
    );
    options.signal?.addEventListener("abort", () => {
      pending.delete(id);
      reject(options.signal.reason);
    });
    const headers = options.context?.headers;
    channel
      .send(
        { jsonrpc: "2.0", id, method: request.method, params: request.params },
        headers ? { requestInit: { headers } } : undefined,
      )
      .catch(reject);
  });
const framing = { protocolVersion: VERSION, clientInfo, clientCapabilities };
const session = tasks.createTaskSessionFromClient(client, {
  endpointId: "mcp-imagegen-test",
  rawDispatch,
  v2RequestFraming: framing,
});

// tasks/get as ext-tasks frames it, for the test's own look at a task.
const get = (taskId) =>
  rawDispatch({
    method: "tasks/get",
    params: {
      taskId,
      _meta: {
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientInfo": clientInfo,
        "io.modelcontextprotocol/clientCapabilities": clientCapabilities,
      },
    },
  });
try {
  const execution = await session.callTool("generate_image", args);
  const taskId = execution.handle?.taskId ?? null;
  say("created", { kind: execution.kind, taskId });
  if (mode === "run") {
    for await (const update of execution.updates()) {
      if (update.type === "task") say("status", { task: update.task });
      else {
        const { outcome } = update;
        say("outcome", {
          status: outcome.status,
          result: outcome.status === "completed" ? outcome.result : null,
        });
      }
    }
    // The same call from a client that does not declare the extension (the
    // request's own capabilities say so): answered synchronously.
    const synchronous = await client.callTool({
      name: "generate_image",
      arguments: args,
      _meta: { "io.modelcontextprotocol/clientCapabilities": {} },
    });
    say("synchronous", { result: synchronous });
  } else if (mode === "cancel") {
    // Poll (bounded) until the backend reports a step, then cancel.
    for (let i = 0; i < 400; i++) {
      const task = await get(taskId);
      if ((task.result?.statusMessage ?? "").includes("step")) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await execution.cancel();
    const { outcome } = await execution.settle();
    say("outcome", { status: outcome.status });
    say("after", await get(taskId));
    say("unknown", await get("20261130T000000000-00000000000000000000000000000000"));
    say("malformed", await get("../etc/passwd"));
  }
} finally {
  await session.close();
}
await client.close();
