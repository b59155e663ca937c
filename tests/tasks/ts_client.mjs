// A real task-aware MCP client: the TypeScript SDK's experimental tasks API
// (protocol revision 2025-11-25) against our server over stdio or HTTP.
//
// Usage: node ts_client.mjs <mode> ; environment:
//   MCP_SDK_DIR      the installed @modelcontextprotocol/sdk package folder
//   SERVER_COMMAND   the server's command; SERVER_ENV a JSON object of its env
//   SERVER_URL       instead: the streamable HTTP endpoint of a running server
//   TOOL_ARGUMENTS   JSON arguments of generate_image
// Modes: "stream" (callToolStream to the end, then the same call without a
// task) and "cancel" (cancelTask once the task reports a step).
// Prints one JSON object per line: {"event": ..., ...}.
import { pathToFileURL } from "node:url";

const sdk = process.env.MCP_SDK_DIR;
const load = (path) => import(pathToFileURL(`${sdk}/dist/esm/${path}`).href);
const { Client } = await load("client/index.js");
const { StdioClientTransport } = await load("client/stdio.js");
const { StreamableHTTPClientTransport } = await load("client/streamableHttp.js");
const { CallToolResultSchema } = await load("types.js");

const mode = process.argv[2];
const args = JSON.parse(process.env.TOOL_ARGUMENTS);
const say = (event, data) => console.log(JSON.stringify({ event, ...data }));

const transport = process.env.SERVER_URL
  ? new StreamableHTTPClientTransport(new URL(process.env.SERVER_URL))
  : new StdioClientTransport({
      command: process.env.SERVER_COMMAND,
      args: ["serve"],
      env: JSON.parse(process.env.SERVER_ENV),
      stderr: "inherit",
    });
const client = new Client({ name: "ts-tasks-test", version: "1.0.0" });
await client.connect(transport);
say("connected", {
  protocolVersion: transport._protocolVersion ?? null,
  tasks: client.getServerCapabilities()?.tasks ?? null,
});
const tools = await client.listTools();
say("tools", {
  execution: Object.fromEntries(tools.tools.map((t) => [t.name, t.execution ?? null])),
});

const params = { name: "generate_image", arguments: args };
if (mode === "stream") {
  const stream = client.experimental.tasks.callToolStream(params, CallToolResultSchema, {
    task: { ttl: 60000 },
  });
  for await (const message of stream) {
    if (message.type === "result") say("result", { result: message.result });
    else if (message.type === "error") say("error", { message: String(message.error) });
    else say(message.type, { task: message.task });
  }
  const synchronous = await client.callTool(params, CallToolResultSchema);
  say("synchronous", { result: synchronous });
} else if (mode === "cancel") {
  const stream = client.experimental.tasks.callToolStream(params, CallToolResultSchema, {
    task: { ttl: 60000 },
  });
  let taskId;
  for await (const message of stream) {
    if (message.type === "taskCreated") {
      taskId = message.task.taskId;
      say("taskCreated", { task: message.task });
      break;
    }
  }
  // Poll (bounded) until the backend reports a step, then cancel.
  for (let i = 0; i < 400; i++) {
    const task = await client.experimental.tasks.getTask(taskId);
    if ((task.statusMessage ?? "").includes("step")) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const cancelled = await client.experimental.tasks.cancelTask(taskId);
  say("cancelled", { task: cancelled });
  const after = await client.experimental.tasks.getTask(taskId);
  say("after", { task: after });
  try {
    await client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema);
    say("resultAfterCancel", { error: null });
  } catch (error) {
    say("resultAfterCancel", { error: String(error), code: error.code ?? null });
  }
  const listed = await client.experimental.tasks.listTasks();
  say("listed", { tasks: listed.tasks });
}
await client.close();
