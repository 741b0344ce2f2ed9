// A peer's address as a person types it: a multiaddr that names the peer (/p2p/<PeerId>), since
// every shoal connection authenticates the PeerId it dials.
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { InvalidArgumentError } from '../core/errors.js'

/** Parses `text` (given as `flag`, e.g. "--to") into a multiaddr that ends in /p2p/<PeerId>. */
export function seedMultiaddr (text: string, flag: string): Multiaddr {
  let addr: Multiaddr
  try {
    addr = multiaddr(text)
  } catch (err) {
    throw new InvalidArgumentError(`${flag} ${text} is not a multiaddr (e.g. /ip4/10.0.0.5/tcp/7700/p2p/12D3Koo…): ${(err as Error).message}`)
  }
  if (addr.getComponents().find(c => c.name === 'p2p') === undefined) {
    throw new InvalidArgumentError(`${flag} ${text} must end in /p2p/<the seed's PeerId> (shown by \`shoal status\` on the seed)`)
  }
  return addr
}
