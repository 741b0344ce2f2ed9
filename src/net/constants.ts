// Defaults of the net layer in one place, so the wire spec (docs/protocol.md §6), the tests and the bench
// quote the same numbers. Protocol ids are part of the wire format: bump the version to change one.

/** Fleet admission handshake, run on every new connection when admission = 'handshake'. */
export const ADMIT_PROTOCOL = '/shoal/admit/1'
/** Bulk blob transfer: one long-lived, credit-controlled stream per peer pair. */
export const BLOBS_PROTOCOL = '/shoal/blobs/1'
/** libp2p identify; gated behind admission so outsiders do not learn our protocols and addresses. */
export const IDENTIFY_PROTOCOL = '/ipfs/id/1.0.0'

/** Bytes of the fleet network key (DESIGN §2: HKDF output shared by every fleet member). */
export const NETWORK_KEY_BYTES = 32
/** Bytes of each side's random nonce in the admission handshake. */
export const ADMIT_NONCE_BYTES = 32
/** Domain-separation label of the admission MAC. */
export const ADMIT_LABEL = 'shoal/v1/admit'
/**
 * A connection that has not proved the network key within this time is closed. Generous for a
 * loaded machine (the handshake is two round trips), short enough that an outsider holds nothing.
 */
export const ADMIT_TIMEOUT_MS = 5_000

/**
 * libp2p's defaults suit a public DHT node, not many daemons on one host or behind one NAT:
 * 5 inbound connections a second per host and 10 pending upgrades trip in tests and on busy sites.
 */
export const CONNECTION_LIMITS = {
  maxConnections: 1_000,
  inboundConnectionThreshold: 1_000,
  maxIncomingPendingConnections: 256,
  maxParallelDials: 100,
  dialTimeout: 10_000
} as const

/**
 * libp2p's connection monitor pings every connection each 10 s and aborts it when a ping takes
 * longer than an adaptive timeout of at least 5 s. A seed serving a few hundred endpoints on a
 * loaded host answers later than that (the ping queues behind blob data on the same TCP
 * connection and behind everyone's frames on the event loop): bench/load.ts lost whole
 * connections, and every fetch in flight on them, to it. The timeout is 25 s, and the interval
 * longer than it, because the ping protocol allows one outbound stream at a time: a second ping
 * started while the first is still waiting fails at once, and that failure aborts the connection
 * too. A dead connection is still found within 55 s (the blobs stream's own idle limit is 30 s).
 */
export const CONNECTION_MONITOR = {
  pingInterval: 30_000,
  pingTimeout: { minTimeout: 25_000, maxTimeout: 25_000 }
} as const

/** mplex closes a connection above this many new inbound streams a second (default 5). */
export const MPLEX_DISCONNECT_THRESHOLD = 10_000

/** Largest blob we ever fetch or serve (DESIGN §3: chunks ≤ 64 KiB, deltas and manifests more). */
export const MAX_BLOB_BYTES = 32 * 1024 * 1024
/** Blob data per DATA frame: the server slices blobs into pieces of at most this size. */
export const BLOBS_MAX_CHUNK = 64 * 1024
/** Largest blobs-protocol frame payload: a DATA frame (type, request id, chunk). */
export const BLOBS_MAX_FRAME = BLOBS_MAX_CHUNK + 16
/** Bytes of blob data the client lets one server have in flight (its receive window). */
export const BLOBS_DEFAULT_WINDOW = 4 * 1024 * 1024
/**
 * Requests a server accepts outstanding on one stream (it tells the client in HELLO). Queued
 * requests cost the server 41 bytes each; blob memory is bounded by readAhead and the window.
 * Fewer than ~128 × 16 KiB left the receiver idle part of the time in bench/net.ts.
 */
export const BLOBS_DEFAULT_MAX_INFLIGHT = 128
/**
 * Source reads a server runs at once per stream: bounds the blob bytes it holds for one peer.
 * 8 left too few blobs ready at a time to fill a send batch (docs/bench-daemon.md, 2026-12-02).
 */
export const BLOBS_DEFAULT_READ_AHEAD = 64
/** …and the bytes those may hold, counted by maxSize until read (one larger blob may go alone). */
export const BLOBS_DEFAULT_READ_AHEAD_BYTES = 4 * 1024 * 1024
/**
 * Requests a server accepts outstanding across all streams before it answers `busy`. A queued
 * request costs ~250 bytes (blob memory is bounded per stream by the read-ahead above), so this
 * is sized for a seed's whole fleet pipelining at once: 256 endpoints each with the stream's
 * limit of BLOBS_DEFAULT_MAX_INFLIGHT (128) outstanding (an endpoint keeps more in flight, the
 * blobs client queues the rest) — at 4 096, 200 endpoints downloading together got two thirds of
 * their requests answered `busy` (bench/load.ts, docs/benchmarks.md).
 */
export const BLOBS_DEFAULT_MAX_INFLIGHT_TOTAL = 32_768
/** A fetch fails with a timeout if its response is not complete this long after it was sent. */
export const BLOBS_DEFAULT_REQUEST_TIMEOUT_MS = 60_000
/** A stream with requests outstanding and no byte received for this long is declared dead. */
export const BLOBS_DEFAULT_IDLE_TIMEOUT_MS = 30_000
/** Time allowed to open a blobs stream: dial, admission, protocol negotiation, server HELLO. */
export const BLOBS_DEFAULT_OPEN_TIMEOUT_MS = 15_000

/** Default time limit of one request/response call. */
export const RPC_DEFAULT_TIMEOUT_MS = 15_000

/** Channel heads and manifests: polled from seeds, pushed to connected peers. */
export const ANNOUNCE_PROTOCOL = '/shoal/announce/1'
/** Publisher → seed: offer a release, the seed pulls the blobs it lacks. */
export const PUBLISH_PROTOCOL = '/shoal/publish/1'
/** Largest JSON header of a control message (announce, publish). */
export const CONTROL_MAX_HEADER = 4 * 1024 * 1024
/** Largest RPC body either way: a 64 MiB manifest plus its control header. */
export const RPC_MAX_BODY = 80 * 1024 * 1024
/** Site members' have-maps: a hello with full bitfields, then increments. */
export const HAVE_PROTOCOL = '/shoal/have/1'
/** Site members' have increments: one long-lived one-way stream per member pair (§6.7). */
export const HAVES_PROTOCOL = '/shoal/haves/1'
/** Endpoint → seed: the endpoint's report (state, bytes, failures, inventory). */
export const REPORT_PROTOCOL = '/shoal/report/1'
/** Publisher → seed: fleet queries (status, endpoints, failures, inventory), publishers only. */
export const FLEET_PROTOCOL = '/shoal/fleet/1'
