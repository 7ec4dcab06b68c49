// The DMARC module of mailauth has no declarations of its own; auth/mailauth.ts types its use.
export declare const evaluateDmarc: unknown;
export declare const dmarc: unknown;
