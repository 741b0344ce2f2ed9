// pino JSON logs to stderr; human-readable when stderr is a terminal.
import { pino, type Logger } from 'pino'
import type { LogLevel } from './config.js'

export type { Logger }

export function createLogger (level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  const pretty = process.stderr.isTTY === true && process.env.SHOAL_LOG_JSON !== '1'
  if (pretty) {
    return pino({ level, base: bindings, transport: { target: 'pino-pretty', options: { destination: 2, colorize: true } } })
  }
  return pino({ level, base: bindings }, pino.destination({ dest: 2, sync: false }))
}
