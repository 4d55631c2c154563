/**
 * A strict, bounded JSON parser and payrail's canonical JSON encoder.
 *
 * `JSON.parse` cannot serve: it turns 9223372036854775807 into a float, 1.0 into 1
 * (an integer field must refuse a float), and keeps the last of two equal keys. This
 * parser keeps every number as its source text (integers become bigint on request),
 * refuses duplicate keys, NaN/Infinity (not JSON anyway) and nesting deeper than
 * {@link DEPTH_MAX}. The encoder writes what payrail's Python encoder writes: sorted
 * keys, no white space, non-ASCII characters as themselves (UTF-8).
 */

/** A JSON number, kept as its source text. */
export class JsonNumber {
  constructor(
    readonly text: string,
    /** No fraction and no exponent: what Python's json reads as an int. */
    readonly isInteger: boolean,
  ) {}
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

/** Thrown for any text that is not strict JSON; carries no input. */
export class JsonSyntaxError extends Error {
  override readonly name = "JsonSyntaxError";
}

// Python's decoder stops at its recursion limit (about 1000); 512 levels is far more
// than any payrail document (3) and bounds the parser's stack.
export const DEPTH_MAX = 512;

const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;
const SIMPLE_ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

class Parser {
  private pos = 0;

  constructor(private readonly text: string) {}

  parseDocument(): JsonValue {
    this.skipWhitespace();
    const value = this.parseValue(0);
    this.skipWhitespace();
    if (this.pos !== this.text.length) throw new JsonSyntaxError("extra data");
    return value;
  }

  private skipWhitespace(): void {
    while (this.pos < this.text.length && WHITESPACE.has(this.text.charCodeAt(this.pos))) {
      this.pos += 1;
    }
  }

  private parseValue(depth: number): JsonValue {
    if (depth > DEPTH_MAX) throw new JsonSyntaxError("too deep");
    const ch = this.text[this.pos];
    switch (ch) {
      case "{":
        return this.parseObject(depth);
      case "[":
        return this.parseArray(depth);
      case '"':
        return this.parseString();
      case "t":
        return this.literal("true", true);
      case "f":
        return this.literal("false", false);
      case "n":
        return this.literal("null", null);
      default:
        return this.parseNumber();
    }
  }

  private literal<T extends JsonValue>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) throw new JsonSyntaxError("unexpected token");
    this.pos += word.length;
    return value;
  }

  private parseNumber(): JsonNumber {
    NUMBER_RE.lastIndex = this.pos;
    const match = NUMBER_RE.exec(this.text);
    if (match === null) throw new JsonSyntaxError("unexpected token");
    this.pos += match[0].length;
    return new JsonNumber(match[0], match[1] === undefined && match[2] === undefined);
  }

  private parseString(): string {
    this.pos += 1; // the opening quote
    let out = "";
    let chunkStart = this.pos;
    for (;;) {
      if (this.pos >= this.text.length) throw new JsonSyntaxError("unterminated string");
      const code = this.text.charCodeAt(this.pos);
      if (code === 0x22) {
        out += this.text.slice(chunkStart, this.pos);
        this.pos += 1;
        return out;
      }
      if (code < 0x20) throw new JsonSyntaxError("control character in string");
      if (code === 0x5c) {
        out += this.text.slice(chunkStart, this.pos);
        const escape = this.text[this.pos + 1];
        if (escape === "u") {
          const hex = this.text.slice(this.pos + 2, this.pos + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new JsonSyntaxError("bad \\u escape");
          // Surrogate halves are joined by concatenation, like Python's decoder; a
          // lone one stays lone (the field rules refuse it).
          out += String.fromCharCode(Number.parseInt(hex, 16));
          this.pos += 6;
        } else {
          const simple = escape === undefined ? undefined : SIMPLE_ESCAPES[escape];
          if (simple === undefined) throw new JsonSyntaxError("bad escape");
          out += simple;
          this.pos += 2;
        }
        chunkStart = this.pos;
        continue;
      }
      this.pos += 1;
    }
  }

  private parseArray(depth: number): JsonValue[] {
    this.pos += 1;
    const items: JsonValue[] = [];
    this.skipWhitespace();
    if (this.text[this.pos] === "]") {
      this.pos += 1;
      return items;
    }
    for (;;) {
      this.skipWhitespace();
      items.push(this.parseValue(depth + 1));
      this.skipWhitespace();
      const ch = this.text[this.pos];
      this.pos += 1;
      if (ch === "]") return items;
      if (ch !== ",") throw new JsonSyntaxError("expected , or ]");
    }
  }

  private parseObject(depth: number): JsonObject {
    this.pos += 1;
    const object: JsonObject = new Map();
    this.skipWhitespace();
    if (this.text[this.pos] === "}") {
      this.pos += 1;
      return object;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"') throw new JsonSyntaxError("expected a key");
      const key = this.parseString();
      if (object.has(key)) throw new JsonSyntaxError("duplicate key");
      this.skipWhitespace();
      if (this.text[this.pos] !== ":") throw new JsonSyntaxError("expected :");
      this.pos += 1;
      this.skipWhitespace();
      object.set(key, this.parseValue(depth + 1));
      this.skipWhitespace();
      const ch = this.text[this.pos];
      this.pos += 1;
      if (ch === "}") return object;
      if (ch !== ",") throw new JsonSyntaxError("expected , or }");
    }
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Strict UTF-8 (no replacement characters; a byte order mark is kept, so refused). */
export function decodeUtf8(data: Uint8Array): string {
  try {
    return UTF8.decode(data);
  } catch {
    throw new JsonSyntaxError("not UTF-8");
  }
}

/** Parse strict JSON text; {@link JsonSyntaxError} for anything else. */
export function parseJson(text: string): JsonValue {
  return new Parser(text).parseDocument();
}

/** What the canonical encoder takes: plain objects, arrays, strings, safe integers,
 * bigints, booleans and null. */
export type Encodable =
  | null
  | boolean
  | string
  | number
  | bigint
  | readonly Encodable[]
  | { readonly [key: string]: Encodable };

/** payrail's canonical JSON: sorted keys, no white space, UTF-8 characters as is. */
export function canonicalJson(value: Encodable): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "string":
      // JSON.stringify escapes exactly what Python's json.dumps(ensure_ascii=False)
      // escapes for well-formed text: quote, backslash and C0 controls.
      return JSON.stringify(value);
    case "number":
      if (!Number.isSafeInteger(value)) throw new TypeError("only safe integers are encoded");
      return String(value);
    case "bigint":
      return value.toString();
    default:
      break;
  }
  if (Array.isArray(value)) {
    return `[${(value as readonly Encodable[]).map(canonicalJson).join(",")}]`;
  }
  const object = value as { readonly [key: string]: Encodable };
  // Keys are ASCII here, where code-unit order is code-point order (Python's sort).
  const keys = Object.keys(object).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(object[k] as Encodable)}`).join(",")}}`;
}
