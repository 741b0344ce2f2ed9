// The `shoal` command line: one file per command, each parsing its arguments, calling the
// library and printing. Exit codes are in common.ts (EXIT) and docs/cli.md.
import { Command, CommanderError } from 'commander'
import { describeError, exitCodeFor, EXIT } from './common.js'
import { registerKeys } from './keys.js'
import { registerPublish } from './publish.js'
import { registerVerify } from './verify.js'
import { registerExtract } from './extract.js'
import { registerDaemon } from './daemon.js'
import { registerStatus } from './status.js'
import { registerDemo } from './demo.js'
import { registerFleet } from './fleet.js'
import { registerControl } from './control.js'
import { SHOAL_VERSION } from '../version.js'

export function buildProgram (): Command {
  const program = new Command('shoal')
    .description('Peer-to-peer delta distribution: signed, encrypted, content-addressed releases\nswapped between LAN peers so each changed byte crosses the WAN once per site.')
    .version(SHOAL_VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    // `publish --version <semver>` must reach the subcommand, not print shoal's own version.
    .enablePositionalOptions()
  registerKeys(program)
  registerPublish(program)
  registerVerify(program)
  registerExtract(program)
  registerDaemon(program)
  registerStatus(program)
  registerFleet(program)
  registerDemo(program)
  registerControl(program)
  return program
}

export async function main (argv: string[]): Promise<number> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv)
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok
      return EXIT.usage
    }
    process.stderr.write(`shoal: ${describeError(err)}\n`)
    return exitCodeFor(err)
  }
}
