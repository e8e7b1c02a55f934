// A minimal renderer of /openapi.json: every operation with its parameters,
// request body and responses. Text is inserted with textContent only.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  children.forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(String(c))));
  return node;
}

function resolve(doc, schema, seen = new Set()) {
  // Inline $refs (once each, so recursive schemas stay finite) for display.
  if (Array.isArray(schema)) return schema.map((s) => resolve(doc, s, seen));
  if (!schema || typeof schema !== "object") return schema;
  if (schema.$ref) {
    const name = schema.$ref.split("/").pop();
    if (seen.has(name)) return { $ref: name };
    return resolve(doc, doc.components.schemas[name], new Set([...seen, name]));
  }
  return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, resolve(doc, v, seen)]));
}

function schemaBlock(doc, schema) {
  return el("pre", {}, JSON.stringify(resolve(doc, schema), null, 2));
}

function operation(doc, path, method, op) {
  const body = el("div");
  if (op.description) body.append(el("p", {}, op.description));
  if (op.parameters && op.parameters.length) {
    const rows = op.parameters.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in),
      el("td", {}, p.required ? "required" : ""), el("td", {}, p.description || JSON.stringify(p.schema || {}))));
    body.append(el("h4", {}, "Parameters"), el("table", {}, ...rows));
  }
  const content = op.requestBody && op.requestBody.content;
  if (content) {
    Object.entries(content).forEach(([type, media]) => body.append(el("h4", {}, `Body (${type})`), schemaBlock(doc, media.schema)));
  }
  body.append(el("h4", {}, "Responses"));
  Object.entries(op.responses || {}).forEach(([code, response]) => {
    const types = Object.keys(response.content || {});
    const details = el("details", {}, el("summary", {}, `${code} ${response.description || ""} ${types.join(", ")}`));
    types.forEach((t) => response.content[t].schema && details.append(schemaBlock(doc, response.content[t].schema)));
    body.append(details);
  });
  const auth = op.security && op.security.length === 0 ? " (no key)" : "";
  return el("details", { class: "op" },
    el("summary", {}, el("span", { class: `m ${method}` }, method.toUpperCase()), el("code", {}, path), ` — ${op.summary || ""}${auth}`),
    body);
}

fetch("/openapi.json").then((r) => r.json()).then((doc) => {
  document.getElementById("info").append(el("p", {}, doc.info.description || ""));
  const ops = document.getElementById("ops");
  ops.textContent = "";
  Object.entries(doc.paths).forEach(([path, methods]) =>
    Object.entries(methods).forEach(([method, op]) => ops.append(operation(doc, path, method, op))));
}).catch((err) => { document.getElementById("ops").textContent = `Could not load /openapi.json: ${err}`; });
