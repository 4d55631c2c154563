/** The wire formats by registry name; nothing outside these modules knows their shape. */

import { FormatError } from "../errors.js";
import type { WireFormat } from "../model.js";
import { JSON_FORMAT } from "./json.js";
import { PROTOBUF_FORMAT } from "./protobuf.js";
import { SOAP_FORMAT } from "./soap.js";

export type FormatName = "json" | "soap" | "protobuf";

const FORMATS: ReadonlyMap<string, WireFormat> = new Map<string, WireFormat>([
  ["json", JSON_FORMAT],
  ["soap", SOAP_FORMAT],
  ["protobuf", PROTOBUF_FORMAT],
]);

/** The format registered under `name`; {@link FormatError} (`unknown_format`) otherwise. */
export function getFormat(name: string): WireFormat {
  const format = FORMATS.get(name);
  if (format === undefined) throw new FormatError("unknown_format");
  return format;
}

export function formatNames(): readonly string[] {
  return [...FORMATS.keys()];
}

export { JSON_FORMAT, PROTOBUF_FORMAT, SOAP_FORMAT };
