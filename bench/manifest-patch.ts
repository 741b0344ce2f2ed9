// What a sealed payload patch saves on a manifest (docs/protocol.md §6.5, "Payload patches"), on a
// release shaped like bench/swarm.ts's: random content, 90 % in 4 large files and 10 % in 40 small
// ones; v2 rewrites two 5 % regions of each large file and every tenth small file. Both releases
// go through the real publisher (delta blobs on, as `shoal publish` does); then the v2 manifest is
// measured full, as a plain manifest delta against v1 (what a site got before) and as the patched
// form (the delta without the ciphertext plus the sealed patch), each rebuilt and checked.
//   node dist/bench/manifest-patch.js [--mib 50]      (200 = the swarm bench's size)
import '../src/polyfills.js'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { generateKeyPair } from '../src/core/keys.js'
import { manifestId } from '../src/core/manifest.js'
import { encodeManifestDelta, rebuildManifest } from '../src/core/manifest-delta.js'
import { applyPayloadPatch, buildPayloadPatch, encodeStrippedDelta } from '../src/core/manifest-patch.js'
import { publishRelease } from '../src/publish/publisher.js'

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(name)
  return i < 0 ? def : Number(process.argv[i + 1])
}

/**
 * bench/swarm.ts's release shape in `dir`, `total` bytes: with `old` (the folder of the previous
 * release), the next release: two 5 % regions of each large file and every tenth small file rewritten.
 */
export async function writeSwarmShapedRelease (dir: string, total: number, old?: string): Promise<string> {
  await mkdir(dir, { recursive: true })
  const large = Math.floor(total * 0.9 / 4)
  const small = Math.floor(total * 0.1 / 40)
  for (let i = 0; i < 4; i++) {
    const name = `large-${i}.bin`
    const bytes = old === undefined ? randomBytes(large) : await readFile(join(old, name))
    if (old !== undefined) for (const at of [0.2, 0.7]) bytes.set(randomBytes(Math.floor(large * 0.05)), Math.floor(large * at))
    await writeFile(join(dir, name), bytes)
  }
  for (let i = 0; i < 40; i++) {
    const name = `small-${String(i).padStart(2, '0')}.bin`
    await writeFile(join(dir, name), old === undefined || i % 10 === 0 ? randomBytes(small) : await readFile(join(old, name)))
  }
  return dir
}

const ms = (t0: number): string => `${(performance.now() - t0).toFixed(0)} ms`
const mb = (n: number): string => `${(n / 1e6).toFixed(3)} MB`

async function main (): Promise<void> {
  const mib = arg('--mib', 50)
  const dir = await mkdtemp(join(tmpdir(), 'shoal-mpatch-'))
  try {
    const signer = generateKeyPair()
    const contentKey = randomBytes(32)
    const publish = async (src: string, version: string, seq: number): Promise<Uint8Array> => await readFile((await publishRelease({
      input: src, package: 'app', version, seq, channel: 'stable', repoDir: join(dir, 'repo'), signers: [signer], contentKey,
      expires: new Date(Date.now() + 86400_000), threads: 2
    })).manifestPath)
    await writeSwarmShapedRelease(join(dir, 'v1'), mib * 1024 * 1024)
    await writeSwarmShapedRelease(join(dir, 'v2'), mib * 1024 * 1024, join(dir, 'v1'))
    const v1 = await publish(join(dir, 'v1'), '1.0.0', 1)
    const v2 = await publish(join(dir, 'v2'), '2.0.0', 2)
    const id1 = manifestId(v1)
    const id2 = manifestId(v2)
    let t0 = performance.now()
    const plain = (await encodeManifestDelta(v1, v2))!
    const plainEnc = ms(t0)
    t0 = performance.now()
    if (!Buffer.from(rebuildManifest(v1, plain, id2)).equals(v2)) throw new Error('plain delta does not rebuild v2')
    const plainDec = ms(t0)
    t0 = performance.now()
    const patch = (await buildPayloadPatch({ id: id1, bytes: v1 }, { id: id2, bytes: v2 }, contentKey))!
    const patchEnc = ms(t0)
    t0 = performance.now()
    const patch9 = (await buildPayloadPatch({ id: id1, bytes: v1 }, { id: id2, bytes: v2 }, contentKey, { level: 9 }))!
    const patch9Enc = ms(t0)
    t0 = performance.now()
    const stripped = (await encodeStrippedDelta(v1, v2))!
    const strippedEnc = ms(t0)
    t0 = performance.now()
    if (!Buffer.from(applyPayloadPatch({ id: id1, bytes: v1 }, stripped, patch, id2, contentKey)).equals(v2)) throw new Error('patched form does not rebuild v2')
    const patchedDec = ms(t0)
    const rows = {
      'release MiB': mib,
      'v2 manifest (full)': mb(v2.length),
      'plain delta': `${mb(plain.length)} (encode ${plainEnc}, rebuild ${plainDec})`,
      'patched form': `${mb(stripped.length + patch.length)} = stripped delta ${mb(stripped.length)} (encode ${strippedEnc}) + sealed patch ${mb(patch.length)} (level 19, build ${patchEnc}: the publisher's); rebuild ${patchedDec}`,
      'patch at level 9': `${mb(patch9.length)} (build ${patch9Enc}: what a site member makes on demand)`,
      'patched ÷ plain': ((stripped.length + patch.length) / plain.length).toFixed(3)
    }
    for (const [k, v] of Object.entries(rows)) process.stdout.write(`${k.padEnd(20)} ${v}\n`)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
