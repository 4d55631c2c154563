/**
 * A small, strict, namespace-aware XML 1.0 parser for the `soap` wire format.
 *
 * Why not a general parser: the ones on npm without a native build (fast-xml-parser
 * among them) are lenient where payrail's reference parser (expat through defusedxml)
 * is strict: they accept undefined entity references, several root elements and
 * unbound prefixes, and leave numeric character references undecoded. A SOAP message
 * needs a small subset of XML, so this module parses exactly that subset and refuses
 * the rest:
 *
 * - any document type declaration, entity declaration or processing instruction other
 *   than the XML declaration is refused as `forbidden_markup` before anything else is
 *   read (no XXE, no "billion laughs": there is no DTD to expand entities from);
 * - references are the five predefined entities and character references only;
 * - elements, attributes, text, CDATA sections and comments, with line endings
 *   normalised and namespaces resolved (an unbound prefix is malformed);
 * - nesting is bounded by {@link DEPTH_MAX}; the caller bounds the input size.
 *
 * Errors carry no input: {@link XmlError} says only whether the markup was forbidden.
 */

export class XmlError extends Error {
  override readonly name = "XmlError";
  constructor(readonly forbidden: boolean) {
    super(forbidden ? "forbidden markup" : "malformed XML");
  }
}

/** One element: expanded name, attributes by expanded name, element children, and the
 * text directly inside it (text and CDATA, comments dropped, children's text not). */
export interface XmlElement {
  readonly namespace: string;
  readonly local: string;
  readonly attributes: ReadonlyMap<string, string>;
  readonly children: readonly XmlElement[];
  readonly text: string;
}

/** `{namespace}local`, the form of expanded names (as in ElementTree). */
export function expandedName(namespace: string, local: string): string {
  return namespace ? `{${namespace}}${local}` : local;
}

// Nothing in a SOAP message nests deeper than 6; the bound keeps the parser's stack small.
export const DEPTH_MAX = 256;

const XML_NS = "http://www.w3.org/XML/1998/namespace";
const XMLNS_NS = "http://www.w3.org/2000/xmlns/";
const NAME_START =
  ":A-Z_a-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D" +
  "\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD\\u{10000}-\\u{EFFFF}";
const NAME_CHAR = `${NAME_START}\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040`;
const NAME_RE = new RegExp(`[${NAME_START}][${NAME_CHAR}]*`, "uy");
const WS_RE = /[ \t\n]*/y; // \r is gone after line-end normalisation
const XML_DECL_RE =
  /<\?xml[ \t\n]+version[ \t\n]*=[ \t\n]*(["'])1\.[0-9]+\1(?:[ \t\n]+encoding[ \t\n]*=[ \t\n]*(["'])([A-Za-z][A-Za-z0-9._-]*)\2)?(?:[ \t\n]+standalone[ \t\n]*=[ \t\n]*(["'])(?:yes|no)\4)?[ \t\n]*\?>/y;
// Characters XML 1.0 does not allow anywhere (a strict UTF-8 decode leaves no lone
// surrogates): C0 controls but tab and line feed, and U+FFFE / U+FFFF.
const NOT_XML_CHAR = /[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]/u;
const PREDEFINED: Record<string, string> = { lt: "<", gt: ">", amp: "&", apos: "'", quot: '"' };

interface Scope {
  readonly prefixes: ReadonlyMap<string, string>;
}

interface RawAttribute {
  readonly name: string;
  readonly value: string;
}

function isXmlChar(code: number): boolean {
  return (
    code === 0x9 ||
    code === 0xa ||
    code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff)
  );
}

class Parser {
  private pos = 0;
  private readonly text: string;

  constructor(source: string) {
    // XML 1.0 section 2.11: CR LF and lone CR become LF before parsing.
    this.text = source.replace(/\r\n?/g, "\n");
  }

  parse(): XmlElement {
    if (NOT_XML_CHAR.test(this.text)) throw new XmlError(false);
    this.refuseForbiddenMarkup();
    if (this.text.startsWith("\uFEFF")) this.pos = 1;
    if (this.text.startsWith("<?xml", this.pos) && /[ \t\n]/.test(this.text[this.pos + 5] ?? "")) {
      XML_DECL_RE.lastIndex = this.pos;
      const match = XML_DECL_RE.exec(this.text);
      if (match === null) throw new XmlError(false);
      const encoding = match[3];
      if (encoding !== undefined && !["utf-8", "utf8"].includes(encoding.toLowerCase())) {
        throw new XmlError(false);
      }
      this.pos = XML_DECL_RE.lastIndex;
    }
    this.misc();
    if (this.text[this.pos] !== "<") throw new XmlError(false);
    const root = this.element({ prefixes: new Map([["xml", XML_NS]]) }, 0);
    this.misc();
    if (this.pos !== this.text.length) throw new XmlError(false);
    return root;
  }

  /**
   * Before parsing: every `<!` that does not open a comment or a CDATA section is a
   * declaration (DOCTYPE, ENTITY, ...), and every `<?` but a leading XML declaration a
   * processing instruction. Comments and CDATA are skipped so text inside them is not
   * taken for markup; `<` cannot appear anywhere else except as markup.
   */
  private refuseForbiddenMarkup(): void {
    const text = this.text;
    let at = text.startsWith("\uFEFF") ? 1 : 0;
    if (text.startsWith("<?xml", at) && /[ \t\n]/.test(text[at + 5] ?? "")) {
      const end = text.indexOf("?>", at);
      if (end < 0) throw new XmlError(false);
      at = end + 2;
    }
    for (;;) {
      const open = text.indexOf("<", at);
      if (open < 0) return;
      if (text.startsWith("<!--", open)) {
        const end = text.indexOf("-->", open + 4);
        if (end < 0) throw new XmlError(false);
        at = end + 3;
      } else if (text.startsWith("<![CDATA[", open)) {
        const end = text.indexOf("]]>", open + 9);
        if (end < 0) throw new XmlError(false);
        at = end + 3;
      } else if (text.startsWith("<!", open) || text.startsWith("<?", open)) {
        throw new XmlError(true);
      } else {
        at = open + 1;
      }
    }
  }

  private skipWhitespace(): void {
    WS_RE.lastIndex = this.pos;
    WS_RE.exec(this.text);
    this.pos = WS_RE.lastIndex;
  }

  /** White space and comments, outside the root element. */
  private misc(): void {
    for (;;) {
      this.skipWhitespace();
      if (this.text.startsWith("<!--", this.pos)) {
        this.comment();
      } else {
        return;
      }
    }
  }

  private comment(): void {
    const end = this.text.indexOf("-->", this.pos + 4);
    if (end < 0) throw new XmlError(false);
    // "--" is not allowed inside a comment (XML 1.0 production 15).
    if (this.text.slice(this.pos + 4, end).includes("--")) throw new XmlError(false);
    this.pos = end + 3;
  }

  private name(): string {
    NAME_RE.lastIndex = this.pos;
    const match = NAME_RE.exec(this.text);
    if (match === null) throw new XmlError(false);
    this.pos = NAME_RE.lastIndex;
    return match[0];
  }

  /** `&...;` at this.pos: the predefined entities and character references only. */
  private reference(): string {
    const end = this.text.indexOf(";", this.pos);
    if (end < 0 || end - this.pos > 12) throw new XmlError(false);
    const body = this.text.slice(this.pos + 1, end);
    this.pos = end + 1;
    let code: number;
    if (/^#[0-9]+$/.test(body)) {
      code = Number.parseInt(body.slice(1), 10);
    } else if (/^#x[0-9a-fA-F]+$/.test(body)) {
      code = Number.parseInt(body.slice(2), 16);
    } else {
      const predefined = PREDEFINED[body];
      // Any other entity would need a DTD to define it, and there is none.
      if (predefined === undefined) throw new XmlError(false);
      return predefined;
    }
    if (!isXmlChar(code)) throw new XmlError(false);
    return String.fromCodePoint(code);
  }

  private attributeValue(): string {
    const quote = this.text[this.pos];
    if (quote !== '"' && quote !== "'") throw new XmlError(false);
    this.pos += 1;
    let value = "";
    for (;;) {
      const ch = this.text[this.pos];
      if (ch === undefined || ch === "<") throw new XmlError(false);
      if (ch === quote) {
        this.pos += 1;
        return value;
      }
      if (ch === "&") {
        value += this.reference();
        continue;
      }
      // Attribute-value normalisation (3.3.3): literal white space becomes a space.
      value += ch === "\n" || ch === "\t" ? " " : ch;
      this.pos += 1;
    }
  }

  private resolve(qualified: string, scope: Scope, isAttribute: boolean): [string, string] {
    const colon = qualified.indexOf(":");
    if (colon < 0) {
      // Unprefixed attributes are in no namespace; elements in the default one.
      return [isAttribute ? "" : (scope.prefixes.get("") ?? ""), qualified];
    }
    const prefix = qualified.slice(0, colon);
    const local = qualified.slice(colon + 1);
    if (!prefix || !local || local.includes(":")) throw new XmlError(false);
    const namespace = scope.prefixes.get(prefix);
    if (namespace === undefined) throw new XmlError(false); // unbound prefix
    return [namespace, local];
  }

  private element(parentScope: Scope, depth: number): XmlElement {
    if (depth >= DEPTH_MAX) throw new XmlError(false);
    this.pos += 1; // "<"
    const qualified = this.name();
    const raw: RawAttribute[] = [];
    let selfClosing = false;
    for (;;) {
      const before = this.pos;
      this.skipWhitespace();
      if (this.text.startsWith("/>", this.pos)) {
        this.pos += 2;
        selfClosing = true;
        break;
      }
      if (this.text[this.pos] === ">") {
        this.pos += 1;
        break;
      }
      if (this.pos === before) throw new XmlError(false); // attributes need white space
      const name = this.name();
      this.skipWhitespace();
      if (this.text[this.pos] !== "=") throw new XmlError(false);
      this.pos += 1;
      this.skipWhitespace();
      if (raw.some((a) => a.name === name)) throw new XmlError(false);
      raw.push({ name, value: this.attributeValue() });
    }
    const prefixes = new Map(parentScope.prefixes);
    for (const { name, value } of raw) {
      if (name === "xmlns") {
        prefixes.set("", value);
      } else if (name.startsWith("xmlns:")) {
        const prefix = name.slice(6);
        // Undeclaring a prefix is not XML 1.0; binding the reserved ones is refused.
        if (!value || prefix === "xmlns" || (prefix === "xml") !== (value === XML_NS)) throw new XmlError(false);
        prefixes.set(prefix, value);
      }
    }
    const scope: Scope = { prefixes };
    const [namespace, local] = this.resolve(qualified, scope, false);
    const attributes = new Map<string, string>();
    for (const { name, value } of raw) {
      if (name === "xmlns" || name.startsWith("xmlns:")) continue;
      const [attrNamespace, attrLocal] = this.resolve(name, scope, true);
      const key = expandedName(attrNamespace === XMLNS_NS ? "" : attrNamespace, attrLocal);
      if (attributes.has(key)) throw new XmlError(false);
      attributes.set(key, value);
    }
    const children: XmlElement[] = [];
    let text = "";
    if (!selfClosing) {
      text = this.content(scope, depth, children, qualified);
    }
    return Object.freeze({ namespace, local, attributes, children, text });
  }

  /** Content up to and including the end tag; returns the text before the first child
   * element (like ElementTree's `text`). */
  private content(scope: Scope, depth: number, children: XmlElement[], qualified: string): string {
    let text = "";
    let chunkStart = this.pos;
    const keep = (upto: number): void => {
      if (children.length === 0) text += this.text.slice(chunkStart, upto);
    };
    for (;;) {
      const ch = this.text[this.pos];
      if (ch === undefined) throw new XmlError(false);
      if (ch === "<") {
        keep(this.pos);
        if (this.text.startsWith("</", this.pos)) {
          this.pos += 2;
          if (this.name() !== qualified) throw new XmlError(false);
          this.skipWhitespace();
          if (this.text[this.pos] !== ">") throw new XmlError(false);
          this.pos += 1;
          return text;
        }
        if (this.text.startsWith("<!--", this.pos)) {
          this.comment();
        } else if (this.text.startsWith("<![CDATA[", this.pos)) {
          const end = this.text.indexOf("]]>", this.pos + 9);
          if (end < 0) throw new XmlError(false);
          if (children.length === 0) text += this.text.slice(this.pos + 9, end);
          this.pos = end + 3;
        } else if (this.text.startsWith("<!", this.pos) || this.text.startsWith("<?", this.pos)) {
          throw new XmlError(true); // already refused by the pre-scan; kept as a guard
        } else {
          children.push(this.element(scope, depth + 1));
        }
        chunkStart = this.pos;
        continue;
      }
      if (ch === "&") {
        keep(this.pos);
        const resolved = this.reference();
        if (children.length === 0) text += resolved;
        chunkStart = this.pos;
        continue;
      }
      if (ch === "]" && this.text.startsWith("]]>", this.pos)) throw new XmlError(false);
      this.pos += 1;
    }
  }
}

/** Parse a whole document (already strictly UTF-8 decoded); the root element. */
export function parseXml(source: string): XmlElement {
  return new Parser(source).parse();
}

/** Text as ElementTree writes it: `&`, `<` and `>` escaped, nothing else. */
export function escapeText(value: string): string {
  return value.replace(/[&<>]/g, (ch) => (ch === "&" ? "&amp;" : ch === "<" ? "&lt;" : "&gt;"));
}
