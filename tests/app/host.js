// A minimal MCP Apps host for the browser test, bundled by esbuild in drive.mjs.
// It talks to our server over streamable HTTP with the official TypeScript MCP
// client, renders the gallery in a sandboxed iframe and joins the two with the
// ext-apps host bridge (AppBridge), which relays the app's tools/call and
// resources/read to the server, as a real host does.
import { AppBridge, PostMessageTransport, buildAllowAttribute } from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const HOST = { name: "mcp-imagegen-test-host", version: "1.0.0" };
const APP_MIME = "text/html;profile=mcp-app";

async function startHost(mcpPath, theme) {
  const client = new Client(HOST, {
    capabilities: { extensions: { "io.modelcontextprotocol/ui": { mimeTypes: [APP_MIME] } } },
  });
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpPath, location.href)));
  const { tools } = await client.listTools();
  const generate = tools.find((tool) => tool.name === "generate_image");
  const uri = generate?._meta?.ui?.resourceUri;
  if (!uri) throw new Error("generate_image carries no _meta.ui.resourceUri");
  const read = await client.readResource({ uri });
  const [content] = read.contents;
  if (content.mimeType !== APP_MIME) throw new Error(`app served as ${content.mimeType}`);

  // Sandboxed like a real host's frame: scripts run, but with an opaque origin
  // (no same-origin access, no network to the page's server).
  const iframe = document.createElement("iframe");
  iframe.setAttribute("sandbox", "allow-scripts");
  // The permissions the resource asks for (_meta.ui.permissions), as the
  // ext-apps spec tells hosts to grant them: the frame's allow attribute.
  const allow = buildAllowAttribute(content._meta?.ui?.permissions);
  if (allow) iframe.setAttribute("allow", allow);
  iframe.title = "mcp-imagegen gallery";
  iframe.style.cssText = "width:100%;height:640px;border:1px solid #888";
  document.body.appendChild(iframe);
  const bridge = new AppBridge(client, HOST, { serverTools: {}, serverResources: {} }, {
    hostContext: { theme, displayMode: "inline" },
  });
  // Wall-clock times (ms since the epoch) comparable with the frame's.
  const now = () => performance.timeOrigin + performance.now();
  const timing = {};
  const initialized = new Promise((resolve) => {
    bridge.oninitialized = () => { timing.initialized = now(); resolve(); };
  });
  // Listen before the document loads: its first message is ui/initialize.
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  // Every resources/read the app asks for, relayed to the server as the
  // bridge's own forwarding (set by connect, so replaced after it) does, and counted by URI.
  const reads = [];
  bridge.onreadresource = async (params) => {
    reads.push(params.uri);
    return client.readResource(params);
  };
  timing.loading = now();
  iframe.srcdoc = content.text;
  await initialized;

  // What a host does when the model calls a tool bound to the app.
  async function callTool(name, args) {
    const result = await client.callTool({ name, arguments: args });
    await bridge.sendToolInput({ arguments: args });
    timing.resultSent = now();
    await bridge.sendToolResult(result);
    return result;
  }
  window.host = { client, bridge, callTool, reads, timing };
  return { uri, tools: tools.map((tool) => tool.name), allow, html: content.text };
}

window.startHost = startHost;
