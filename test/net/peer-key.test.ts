import { mkdtemp, readFile, rm, stat, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { privateKeyToProtobuf, generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { PeerKeyCorruptError } from '../../src/net/errors.js'
import { loadOrCreatePeerKey, PEER_KEY_FILE } from '../../src/net/peer-key.js'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-peer-key-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('loadOrCreatePeerKey', () => {
  it('creates an Ed25519 key once, 0600, and returns the same identity on reopen', async () => {
    const state = join(dir, 'state')
    const a = await loadOrCreatePeerKey(state)
    expect(a.type).toBe('Ed25519')
    const mode = (await stat(join(state, PEER_KEY_FILE))).mode & 0o777
    expect(mode).toBe(0o600)
    const b = await loadOrCreatePeerKey(state)
    expect(peerIdFromPrivateKey(b).toString()).toBe(peerIdFromPrivateKey(a).toString())
    expect(b.equals(a)).toBe(true)
    expect(await readdir(state)).toEqual([PEER_KEY_FILE]) // no temp file left behind
  })

  it('two concurrent first starts end up with one identity', async () => {
    const [a, b] = await Promise.all([loadOrCreatePeerKey(dir), loadOrCreatePeerKey(dir)])
    expect(a.equals(b)).toBe(true)
    const c = await loadOrCreatePeerKey(dir)
    expect(c.equals(a)).toBe(true)
  })

  it('refuses a corrupt file and leaves it untouched', async () => {
    const path = join(dir, PEER_KEY_FILE)
    await writeFile(path, Buffer.from('not a key at all'))
    await expect(loadOrCreatePeerKey(dir)).rejects.toBeInstanceOf(PeerKeyCorruptError)
    expect((await readFile(path)).toString()).toBe('not a key at all')
  })

  it('refuses a key whose public half does not match its seed', async () => {
    const key = await loadOrCreatePeerKey(dir)
    const bytes = Buffer.from(await readFile(join(dir, PEER_KEY_FILE)))
    bytes[bytes.length - 1]! ^= 0x01 // last byte of the embedded public key
    await writeFile(join(dir, PEER_KEY_FILE), bytes)
    const err = await loadOrCreatePeerKey(dir).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PeerKeyCorruptError)
    expect((err as Error).message).toMatch(/public key/)
    expect(key.type).toBe('Ed25519')
  })

  it('refuses a valid key of another type', async () => {
    const other = await generateKeyPair('secp256k1')
    await writeFile(join(dir, PEER_KEY_FILE), privateKeyToProtobuf(other))
    await expect(loadOrCreatePeerKey(dir)).rejects.toThrow(/Ed25519/)
  })
})
