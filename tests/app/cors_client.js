// A browser page's MCP client on another origin than the server, for the CORS
// test; bundled by esbuild in cors.mjs. The official TypeScript MCP client over
// streamable HTTP, as a web app would use it.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

// Connects to `url`, lists the tools, generates one image and fetches its
// signed /images link; returns what it saw, or the error that stopped it.
async function tryServer(url, token) {
  const seen = {};
  try {
    const client = new Client({ name: "mcp-imagegen-cors-test", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(url), {
      requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : undefined,
    });
    await client.connect(transport);
    // Stateful servers only: readable when the server exposes Mcp-Session-Id.
    seen.sessionId = transport.sessionId ?? null;
    seen.tools = (await client.listTools()).tools.map((tool) => tool.name);
    const result = await client.callTool({
      name: "generate_image",
      arguments: { prompt: "a lighthouse seen from another origin", width: 64, height: 64 },
    });
    const [image] = result.structuredContent.images;
    seen.imageId = image.id;
    const response = await fetch(image.url);
    seen.image = {
      status: response.status,
      type: response.headers.get("content-type"),
      etag: response.headers.get("etag"),
      bytes: (await response.arrayBuffer()).byteLength,
    };
    await client.close();
  } catch (error) {
    seen.error = `${error.name}: ${error.message}`;
  }
  return seen;
}

window.tryServer = tryServer;
