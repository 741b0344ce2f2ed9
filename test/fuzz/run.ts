// `npm run fuzz`: the long run — every target (or those named), ≥ 100 000 inputs each by default,
// one worker at a time (the machine is shared), then a table and every failure with its seed and
// index. Exit 1 when anything crashed or hung.
//
//   npm run fuzz                                   # all targets, 100 000 inputs, a random seed
//   npm run fuzz -- --seed 42 --inputs 1000000
//   npm run fuzz -- --target manifest --target head
import { parseArgs } from 'node:util'
import { randomInt } from 'node:crypto'
import { formatTable, runTarget, type TargetReport } from './pool.js'
import { TARGET_NAMES } from './targets.js'

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    inputs: { type: 'string', default: '100000' },
    target: { type: 'string', multiple: true },
    'hang-ms': { type: 'string', default: '10000' },
    list: { type: 'boolean', default: false }
  }
})

if (values.list) {
  process.stdout.write(TARGET_NAMES.join('\n') + '\n')
  process.exit(0)
}
const seed = values.seed === undefined ? randomInt(2 ** 31) : Number(values.seed)
const inputs = Number(values.inputs)
const hangMs = Number(values['hang-ms'])
if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(inputs) || inputs < 1 || !(hangMs > 0)) {
  process.stderr.write('usage: npm run fuzz -- [--seed N] [--inputs N] [--target NAME]… [--hang-ms N] [--list]\n')
  process.exit(2)
}
const names = values.target ?? TARGET_NAMES
for (const n of names) {
  if (!TARGET_NAMES.includes(n)) {
    process.stderr.write(`unknown target ${JSON.stringify(n)}; targets:\n  ${TARGET_NAMES.join('\n  ')}\n`)
    process.exit(2)
  }
}

process.stdout.write(`fuzzing ${names.length} target(s), ${inputs} inputs each, seed ${seed}\n`)
const reports: TargetReport[] = []
for (const n of names) {
  const t0 = Date.now()
  const r = await runTarget(n, { seed, inputs, hangMs })
  reports.push(r)
  process.stdout.write(`  ${n}: ${r.inputs} inputs in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${r.failed} failed\n`)
}
process.stdout.write('\n' + formatTable(reports) + '\n')
const failures = reports.flatMap(r => r.failures)
if (failures.length > 0) {
  process.stdout.write(`\nfailures (reproduce with: npm run fuzz -- --seed ${seed} --target "<target>" --inputs <index + 1>):\n`)
  for (const f of failures) process.stdout.write(`  ${JSON.stringify(f)}\n`)
}
process.exit(reports.some(r => r.failed > 0) ? 1 : 0)
