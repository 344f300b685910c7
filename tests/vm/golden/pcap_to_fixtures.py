#!/usr/bin/env python3
"""Turns the pcap hex dumps that capture-golden.sh prints on the VM console into fixture files:
one per case, with every IPVS netlink message (request or reply) and the acks/errors/done
messages that answer them, as hex, one message per line."""
import struct, sys, os

cases_file, console, outdir = sys.argv[1:4]
commands = {}
for line in open(cases_file):
    if line.startswith('#') or '|' not in line:
        continue
    name, args = line.split('|', 1)
    commands[name.strip()] = 'ipvsadm ' + args.strip()

blobs, cur, hexbuf = {}, None, []
for line in open(console, errors='replace'):
    line = line.strip()
    if line.startswith('GOLDEN-BEGIN '):
        cur, hexbuf = line.split()[1], []
    elif line.startswith('GOLDEN-END ') and cur:
        blobs[cur] = bytes.fromhex(''.join(hexbuf))
        cur = None
    elif cur:
        hexbuf.append(line.replace(' ', ''))

def records(pcap):
    if len(pcap) < 24:
        return
    off = 24
    while off + 16 <= len(pcap):
        _, _, incl, _ = struct.unpack_from('<IIII', pcap, off)
        off += 16
        # nlmon records start with a 16-byte cooked header (packet type, ARPHRD_NETLINK, protocol).
        yield pcap[off + 16:off + incl]
        off += incl

def messages(data):
    off = 0
    while off + 16 <= len(data):
        length, = struct.unpack_from('<I', data, off)
        if length < 16 or off + length > len(data):
            break
        yield data[off:off + length]
        off += (length + 3) & ~3

NLM_F_REQUEST = 1
os.makedirs(outdir, exist_ok=True)
missing = [n for n in commands if n not in blobs]
if missing:
    sys.exit(f'no capture for: {", ".join(missing)}')
for name, pcap in blobs.items():
    msgs = [m for r in records(pcap) for m in messages(r)]
    family = None
    for m in msgs:
        length, typ, flags, seq, pid = struct.unpack_from('<IHHII', m)
        if typ == 0x10 and not flags & NLM_F_REQUEST:
            off = 20
            while off + 4 <= len(m):
                alen, akind = struct.unpack_from('<HH', m, off)
                if alen < 4:
                    break
                if akind & 0x3fff == 1:
                    family, = struct.unpack_from('<H', m, off + 4)
                off += (alen + 3) & ~3
    if family is None:
        sys.exit(f'{name}: no IPVS family id in the capture')
    requests = set()
    lines = [f'# {commands[name]}', f'family {family}']
    for m in msgs:
        length, typ, flags, seq, pid = struct.unpack_from('<IHHII', m)
        if typ == family and flags & NLM_F_REQUEST:
            requests.add(seq)
            lines.append('request ' + m.hex())
        elif typ == family:
            lines.append('reply ' + m.hex())
        elif typ in (2, 3) and seq in requests:
            lines.append('reply ' + m.hex())
    with open(os.path.join(outdir, name + '.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
print(f'wrote {len(blobs)} fixtures to {outdir}')
