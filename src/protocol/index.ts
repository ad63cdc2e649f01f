export * from './errors.js';
export * from './frames.js';
export * from './frame-codec.js';
export * from './frame-decoder.js';
export * from './frame-rules.js';
export * from './error-codes.js';
