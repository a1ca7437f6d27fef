// AniTalker nodes in the ComfyUI editor: each node's message (its UI "text") shown on the node after a run,
// widget labels in the user's language or from the schema's display names (older front ends ignore them), and a
// visible label above multiline boxes such as the keyframes. Nothing here is saved into workflows or sent with prompts.
import { app } from "../../scripts/app.js";

const PACK = "AniTalker";
const INFO = "anitalker_info";
const FONT = "12px sans-serif";
const LABEL_FONT = "11px sans-serif";
const LABEL_MARGIN = 18; // a multiline box's inset, leaving room for its label above it
const LINE_H = 15;
const SIDE = 15; // the editor's widget inset

const measure = document.createElement("canvas").getContext("2d");

function wrap(text, width) {
  measure.font = FONT;
  const lines = [];
  for (const paragraph of String(text).split("\n")) {
    let line = "";
    for (const word of paragraph.split(/(?<=[\s;,])/)) {
      if (line && measure.measureText(line + word).width > width) {
        lines.push(line.trimEnd());
        line = word.trimStart();
      } else {
        line += word;
      }
    }
    lines.push(line.trimEnd());
  }
  return lines;
}

// A canvas-drawn widget of fixed height, always the node's last one: serialize: false keeps it out of saved
// widget values (the editor stores values by widget position, so it must not sit between other widgets) and
// out of prompts.
function textWidget(name, lines, color) {
  return {
    name,
    type: name,
    value: "",
    lines,
    serialize: false,
    options: { serialize: false },
    computeSize(width) {
      return [width, this.lines.length * LINE_H + 6];
    },
    draw(ctx, node, width, y) {
      ctx.save();
      ctx.font = FONT;
      ctx.fillStyle = color;
      ctx.textAlign = "left";
      ctx.textBaseline = "alphabetic";
      this.lines.forEach((line, i) => ctx.fillText(line, SIDE, y + 12 + i * LINE_H, width - 2 * SIDE));
      ctx.restore();
    },
  };
}

function labelsOf(nodeData) {
  const labels = {};
  for (const group of ["required", "optional"]) {
    for (const [name, spec] of Object.entries(nodeData.input?.[group] ?? {})) {
      const label = Array.isArray(spec) ? spec[1]?.display_name : undefined;
      if (label) labels[name] = label;
    }
  }
  return labels;
}

// A frontend that names inputs itself (localized_name: the user's language, else the schema's label) is followed;
// the schema's labels serve older ones.
function applyLabels(node, labels) {
  const localized = {};
  for (const input of node.inputs ?? []) {
    if (input.localized_name) localized[input.name] = input.localized_name;
  }
  for (const widget of node.widgets ?? []) {
    const label = localized[widget.name] ?? labels[widget.name];
    if (!label) continue;
    if (!widget.label || widget.label === widget.name) widget.label = label;
    if (widget.element?.tagName === "TEXTAREA") {
      widget.options.margin = LABEL_MARGIN; // the box moves down; drawLabels writes the label above it
      widget.element.title = label;
    }
  }
  for (const input of node.inputs ?? []) {
    if (labels[input.name] && !input.label && !input.localized_name) input.label = labels[input.name];
  }
}

function drawLabels(node, ctx) {
  if (node.flags?.collapsed) return;
  for (const widget of node.widgets ?? []) {
    if (widget.element?.tagName !== "TEXTAREA" || widget.options?.margin !== LABEL_MARGIN || widget.y == null) continue;
    ctx.save();
    ctx.font = LABEL_FONT;
    ctx.fillStyle = "#999";
    ctx.textAlign = "left";
    ctx.fillText(widget.label ?? widget.name, LABEL_MARGIN, widget.y + 14);
    ctx.restore();
  }
}

function showInfo(node, text) {
  let widget = node.widgets?.find((w) => w.name === INFO);
  if (!widget) {
    widget = textWidget(INFO, [], "#b8c4b8");
    node.addCustomWidget(widget);
  }
  widget.value = text;
  widget.lines = wrap(text, node.size[0] - 2 * SIDE);
  const need = node.computeSize();
  node.setSize([Math.max(node.size[0], need[0]), Math.max(node.size[1], need[1])]);
  node.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "AniTalker.NodeMessages",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith(PACK)) return;
    const labels = labelsOf(nodeData);

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      applyLabels(this, labels);
      return result;
    };

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const result = onDrawForeground?.apply(this, arguments);
      drawLabels(this, ctx);
      return result;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const result = onExecuted?.apply(this, arguments);
      const text = message?.text;
      if (Array.isArray(text) && text.length) showInfo(this, text.join("\n"));
      return result;
    };
  },
});
