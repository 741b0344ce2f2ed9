// Errors of the net layer. Callers (swarm scheduler, daemon) branch on the class or on `code`:
// a verify failure scores the peer down, not-found/busy move on to another peer, a protocol or
// connection error drops the stream and the next fetch reopens it.
import { ShoalError } from '../core/errors.js'

/** `peer.key` exists but does not hold a valid Ed25519 libp2p private key; it is never replaced. */
export class PeerKeyCorruptError extends ShoalError {
  constructor (path: string, reason: string, options?: { cause?: unknown }) {
    super('ERR_PEER_KEY_CORRUPT', `peer identity ${path} is unusable (${reason}); restore it from a backup, or delete it to start as a new peer (other peers and the seed will see a new PeerId)`, options)
  }
}

/** A frame header announced more bytes than the protocol allows; nothing of it was buffered. */
export class FrameOversizeError extends ShoalError {
  constructor (length: number, limit: number) {
    super('ERR_FRAME_OVERSIZE', `peer announced a ${length}-byte frame, above the ${limit}-byte limit of this protocol`)
  }
}

/** The stream ended in the middle of a frame. */
export class FrameTruncatedError extends ShoalError {
  constructor (have: number, want: number | undefined) {
    super('ERR_FRAME_TRUNCATED', want === undefined
      ? `stream ended inside a frame header (${have} of 4 bytes)`
      : `stream ended inside a frame (${have} of ${want} bytes)`)
  }
}

/** The stream or connection closed (or was reset) while we were writing or waiting for a reply. */
export class StreamClosedError extends ShoalError {
  constructor (what: string, options?: { cause?: unknown }) {
    super('ERR_STREAM_CLOSED', `${what}: the stream closed`, options)
  }
}

/** A peer did not prove the fleet network key, or did not finish the admission handshake in time. */
export class AdmissionDeniedError extends ShoalError {
  constructor (peer: string, reason: string, options?: { cause?: unknown }) {
    super('ERR_ADMISSION_DENIED', `peer ${peer} is not admitted to the fleet: ${reason} (check that both ends hold the same network key)`, options)
  }
}

/** The remote broke the wire protocol (bad frame, unknown request id, credits exceeded…). */
export class PeerProtocolError extends ShoalError {
  constructor (peer: string, reason: string, options?: { cause?: unknown }) {
    super('ERR_PEER_PROTOCOL', `peer ${peer} broke the protocol: ${reason}`, options)
  }
}

/** We could not reach the peer, or the connection/stream to it died with requests outstanding. */
export class PeerConnectionError extends ShoalError {
  constructor (peer: string, reason: string, options?: { cause?: unknown }) {
    super('ERR_PEER_CONNECTION', `peer ${peer}: ${reason}`, options)
  }
}

/** A network operation took longer than its time limit. */
export class NetTimeoutError extends ShoalError {
  constructor (what: string, ms: number, options?: { cause?: unknown }) {
    super('ERR_NET_TIMEOUT', `${what} timed out after ${ms} ms`, options)
  }
}

/** The caller's AbortSignal fired. */
export class NetAbortedError extends ShoalError {
  constructor (what: string, options?: { cause?: unknown }) {
    super('ERR_ABORTED', `${what} was aborted`, options)
  }
}

/** The peer does not hold the blob. */
export class BlobNotFoundError extends ShoalError {
  constructor (peer: string, cidHex: string) {
    super('ERR_BLOB_NOT_FOUND', `peer ${peer} does not have blob ${cidHex}`)
  }
}

/** The peer is overloaded and declined the request; ask again later or ask another peer. */
export class BlobBusyError extends ShoalError {
  constructor (peer: string, cidHex: string) {
    super('ERR_BLOB_BUSY', `peer ${peer} is busy and declined blob ${cidHex}`)
  }
}

/** The peer answered with an error status (failed read, blob larger than we allow…). */
export class BlobRemoteError extends ShoalError {
  constructor (peer: string, cidHex: string) {
    super('ERR_BLOB_REMOTE', `peer ${peer} failed to serve blob ${cidHex}`)
  }
}

/** The bytes received do not hash to the cid asked for, or exceed the size we allowed. */
export class BlobVerifyError extends ShoalError {
  constructor (peer: string, cidHex: string, reason: string) {
    super('ERR_BLOB_VERIFY', `blob ${cidHex} from peer ${peer} failed verification: ${reason}`)
  }
}

/** An RPC handler on the remote failed; `remoteCode` is the code it reported. */
export class RpcRemoteError extends ShoalError {
  readonly remoteCode: string

  constructor (peer: string, protocol: string, remoteCode: string, message: string) {
    super('ERR_RPC_REMOTE', `${protocol} on peer ${peer} failed: ${message} (${remoteCode})`)
    this.remoteCode = remoteCode
  }
}
