/**
 * The shape of a teaching note: a rule in plain words and the RFC section
 * that writes it down. The reply table (`reply.ts`) and the annotation table
 * (`annotations.ts`) both hold notes of this shape.
 *
 * @module
 */

/** Where a rule is written down: an RFC, and a section of it when one says it. */
export interface RfcReference {
  /** The RFC's number, such as `5321`. */
  readonly rfc: number;
  /** The section, such as `"4.1.1.2"`, when the rule has one. */
  readonly section?: string;
}

/** One explained thing: a code, command, extension, parameter or reply. */
export interface Note {
  /** The RFC's own name for it: `"Requested mail action okay, completed"`. */
  readonly title: string;
  /** A few plain words for a one-line annotation: `"done"`. */
  readonly rule: string;
  /** What it means, in sentences, for someone learning SMTP. */
  readonly meaning: string;
  /** Where it is defined. */
  readonly reference: RfcReference;
}

/**
 * Builds a reference.
 *
 * @param rfc The RFC's number.
 * @param section The section, when the rule has one.
 * @returns The reference.
 *
 * @example
 * ```ts
 * import { ref } from "./rfc_note.ts";
 * console.log(ref(5321, "4.1.1.2")); // { rfc: 5321, section: "4.1.1.2" }
 * ```
 */
export function ref(rfc: number, section?: string): RfcReference {
  return section === undefined ? { rfc } : { rfc, section };
}
