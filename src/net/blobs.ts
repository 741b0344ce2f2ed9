// /shoal/blobs/1, the bulk transfer protocol (docs/protocol.md §6.3): the server (blobs-server.ts)
// answers pipelined requests from a BlobSource, the client (blobs-client.ts) fetches and verifies.
// The wire messages are in blobs-wire.ts.
export { registerBlobsProtocol, BlobServerStats, type BlobSource, type BlobServerOptions } from './blobs-server.js'
export { BlobClient, type BlobClientOptions, type BatchOptions, type BlobOutcome, type BlobWant, type PeerTransferStats } from './blobs-client.js'
export {
  BlobNotFoundError, BlobBusyError, BlobRemoteError, BlobVerifyError, PeerProtocolError,
  PeerConnectionError, NetTimeoutError, NetAbortedError, AdmissionDeniedError
} from './errors.js'
