import assert from "node:assert/strict";
import {
  decodeResponse,
  encodeBody,
  encodeConnect,
  encodeMacros,
  encodeMail,
  encodeOptneg,
  familyOf,
  MAX_BODY_CHUNK,
  MilterProtocolError,
  PacketReader,
  SMFIP,
} from "./codec.ts";

const enc = new TextEncoder();

function bytes(...parts: (string | number[])[]): Uint8Array {
  const out: number[] = [];
  for (const part of parts) out.push(...(typeof part === "string" ? enc.encode(part) : part));
  return new Uint8Array(out);
}

Deno.test("codec: OPTNEG offers version 6, every action and protocol flag", () => {
  const packet = encodeOptneg();
  assert.deepEqual([...packet.subarray(0, 5)], [0, 0, 0, 13, "O".charCodeAt(0)]);
  const view = new DataView(packet.buffer);
  assert.equal(view.getUint32(5), 6);
  assert.equal(view.getUint32(9), 0x1ff);
  assert.equal(view.getUint32(13), 0x1fffff);
});

Deno.test("codec: CONNECT carries name, family, port and address; MAIL and MACRO are NUL-separated", () => {
  assert.deepEqual(
    encodeConnect("[192.0.2.1]", "4", 2525, "192.0.2.1"),
    bytes([0, 0, 0, 26], "C[192.0.2.1]\0", "4", [0x09, 0xdd], "192.0.2.1\0"),
  );
  assert.deepEqual(encodeConnect("x", "U", 0, ""), bytes([0, 0, 0, 4], "Cx\0U"));
  assert.deepEqual(
    encodeMail("a@example.org", ["SIZE=10"]),
    bytes([0, 0, 0, 25], "M<a@example.org>\0SIZE=10\0"),
  );
  assert.deepEqual(
    encodeMacros("M", [["i", "Q1"], ["{mail_addr}", "a\0b"]]),
    bytes([0, 0, 0, 22], "DMi\0Q1\0{mail_addr}\0ab\0"),
  );
  assert.equal(familyOf("::1"), "6");
  assert.equal(familyOf("198.51.100.7"), "4");
  assert.equal(familyOf("/run/x.sock"), "L");
});

Deno.test("codec: a body is cut into packets of at most 65535 octets", () => {
  const packets = encodeBody(new Uint8Array(MAX_BODY_CHUNK + 10));
  assert.deepEqual(packets.map((p) => p.length - 5), [MAX_BODY_CHUNK, 10]);
});

Deno.test("codec: every response decodes, and packets split across reads are joined", () => {
  const reader = new PacketReader();
  const pkt = (code: string, ...parts: (string | number[])[]) => {
    const data = bytes(...parts);
    const length = data.length + 1;
    return bytes(
      [length >>> 24, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff],
      code,
      [
        ...data,
      ],
    );
  };
  const wire = new Uint8Array([
    ...pkt("c"),
    ...pkt("h", "X-Spam\0yes, 5.1\0"),
    ...pkt("i", [0, 0, 0, 0], "DKIM\0v=1; a\0"),
    ...pkt("m", [0, 0, 0, 2], "Subject\0\0"),
    ...pkt("e", "<b@example.org>\0"),
    ...pkt("2", "<c@example.org>\0"),
    ...pkt("-", "<d@example.org>\0"),
    ...pkt("b", "ab\n"),
    ...pkt("q", "spam\0"),
    ...pkt("y", "554 5.7.1 No thanks\0"),
  ]);
  const packets = [...reader.push(wire.subarray(0, 7)), ...reader.push(wire.subarray(7))];
  const responses = packets.map((p) => decodeResponse(p.code, p.data));
  assert.deepEqual(responses, [
    { type: "continue" },
    { type: "addheader", name: "X-Spam", value: "yes, 5.1" },
    { type: "insheader", index: 0, name: "DKIM", value: "v=1; a" },
    { type: "chgheader", index: 2, name: "Subject", value: "" },
    { type: "chgfrom", sender: "<b@example.org>", args: "" },
    { type: "addrcpt", recipient: "<c@example.org>", args: "" },
    { type: "delrcpt", recipient: "<d@example.org>" },
    { type: "replbody", chunk: enc.encode("ab\n") },
    { type: "quarantine", reason: "spam" },
    { type: "replycode", text: "554 5.7.1 No thanks" },
  ]);
});

Deno.test("codec: OPTNEG answer with symbol lists; nonsense is a MilterProtocolError", () => {
  const data = bytes(
    [0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, SMFIP.NOBODY],
    [0, 0, 0, 2],
    "{mail_addr} i\0",
  );
  const answer = decodeResponse("O".charCodeAt(0), data);
  assert.equal(answer.type, "optneg");
  if (answer.type === "optneg") {
    assert.deepEqual([...answer.negotiated.symbols], [[2, ["{mail_addr}", "i"]]]);
  }
  assert.throws(() => decodeResponse("Z".charCodeAt(0), new Uint8Array()), MilterProtocolError);
  assert.throws(() => decodeResponse("h".charCodeAt(0), enc.encode("no nul")), MilterProtocolError);
  assert.throws(() => decodeResponse("c".charCodeAt(0), enc.encode("x")), MilterProtocolError);
  assert.throws(() => new PacketReader().push(bytes([0, 0, 0, 0])), MilterProtocolError);
  assert.throws(() => new PacketReader().push(bytes([0x7f, 0, 0, 0])), MilterProtocolError);
});
