#!/usr/bin/env python3
"""Writes the hand-made seed inputs into fuzz/seeds/ (small, well-formed
starting points; the ones from real code come from fuzz/make-seeds)."""
import os, struct

os.chdir(os.path.dirname(os.path.abspath(__file__)))

def w(target, name, data):
    d = f'seeds/{target}'
    os.makedirs(d, exist_ok=True)
    open(f'{d}/{name}', 'wb').write(data if isinstance(data, bytes) else data.encode())

# RDP front: X.224 Connection Requests (mode byte first; see rdp_front.rs).
def x224_cr(protocols, cookie=b''):
    neg = bytes([1, 0, 8, 0]) + struct.pack('<I', protocols)
    body = bytes([0xe0, 0, 0, 0, 0, 0]) + cookie + neg
    x224 = bytes([len(body)]) + body
    return bytes([3, 0]) + struct.pack('>H', 4 + len(x224)) + x224
w('rdp_front', 'x224_tls_nla', bytes([1]) + x224_cr(3, b'Cookie: mstshash=tanaka\r\n'))
w('rdp_front', 'x224_tls', bytes([0]) + x224_cr(1))
w('rdp_front', 'x224_rdp_security', bytes([0]) + x224_cr(0))

# NLA: NTLM AUTHENTICATE (MS-NLMP 2.2.1.3) and TsRequests (MS-CSSP 2.2.1).
def utf16(s):
    return s.encode('utf-16-le')
def authenticate(user, domain):
    msg = b'NTLMSSP\0' + bytes([3, 0, 0, 0])
    d, u = utf16(domain), utf16(user)
    fields = bytearray(52)
    def put(at, ln, off):
        fields[at:at + 2] = struct.pack('<H', ln)
        fields[at + 2:at + 4] = struct.pack('<H', ln)
        fields[at + 4:at + 8] = struct.pack('<I', off)
    put(16, len(d), 64)
    put(24, len(u), 64 + len(d))
    return msg + bytes(fields) + d + u
def der(tag, content):
    n = len(content)
    if n < 128:
        l = bytes([n])
    elif n < 256:
        l = bytes([0x81, n])
    else:
        l = bytes([0x82]) + struct.pack('>H', n)
    return bytes([tag]) + l + content
def ts_request(token, version=6):
    nego = der(0x30, der(0x30, der(0xa0, der(0x04, token))))
    return der(0x30, der(0xa0, der(0x02, bytes([version]))) + der(0xa1, nego))
negotiate = b'NTLMSSP\0' + bytes([1, 0, 0, 0]) + struct.pack('<I', 0xe2088297) + bytes(16)
w('rdp_nla', 'authenticate_raw', authenticate('tanaka@fa-db01', ''))
w('rdp_nla', 'ts_negotiate', ts_request(negotiate))
w('rdp_nla', 'ts_negotiate_authenticate',
  ts_request(negotiate) + ts_request(authenticate('fuzzer', 'fuzz-target')))

# Login names (mode 0 SSH, 1 RDP) and exec commands (mode 2).
for i, (m, t) in enumerate([
        (0, 'tanaka@fa-db01'), (0, 'tanaka'), (0, 'a@b@c'), (1, 'tanaka@fa-db01'),
        (1, 'fa-db01\\tanaka'), (1, 'tanaka\0fa-db01'), (2, 'scp -t /tmp'),
        (2, 'sudo -u root scp -f x'), (2, "sh -c 'rsync --server -e.Lsfx . /tmp'"),
        (2, 'ls -la; echo "a b" | grep x'), (2, 'env LANG=C busybox sh -c "eval sftp-server"'),
        (2, 'LC_ALL')]):
    w('ssh_login', f'seed{i}', bytes([m]) + t.encode())

# Policies and config: the shipped examples, and the small syntaxes.
for f in os.listdir('../policies'):
    w('policy', f, open('../policies/' + f, 'rb').read())
w('policy', 'two_files',
  open('../policies/fa.toml', 'rb').read() + b'\0' + open('../policies/juki.toml', 'rb').read())
w('config', 'sekisho.toml', open('../src/cli/sekisho.toml.in', 'rb').read())
for i, t in enumerate(['30s', '1h30m', '7d', 'Mon-Fri 08:30-17:15',
                       'Sat 09:00-12:00, Mon-Fri 22:00-06:00', '0s']):
    w('config', f'syntax{i}', t)

# Relay decoders: chunks with a 2-byte length (see rdp_relay.rs).
def chunk(b):
    return struct.pack('<H', len(b)) + b
dvc_create = struct.pack('<II', 0, 3) + bytes([0x10, 5]) + b'Microsoft::Windows::RDS::Graphics\0'
dvc_data_client = struct.pack('<II', 0, 3) + bytes([0x30, 5]) + b'hello'
demand_active = struct.pack('<HHH', 30, 0x11, 1002) + struct.pack('<I', 0x103ea) + bytes(20)
deactivate = struct.pack('<HHH', 10, 0x16, 1002) + struct.pack('<I', 0x103ea)
save_session = (struct.pack('<HHH', 22, 0x17, 1002) + struct.pack('<I', 0x103ea) + bytes([0, 1])
                + struct.pack('<H', 4) + bytes([0x26, 0, 0, 0]) + bytes(4))
input_pdu = (struct.pack('<HHH', 30, 0x17, 1007) + struct.pack('<I', 0x103ea) + bytes([0, 1])
             + struct.pack('<H', 16) + bytes([0x1c, 0, 0, 0]) + struct.pack('<HH', 1, 0)
             + struct.pack('<IHHHH', 0, 4, 0, 0x1e, 0))
w('rdp_relay', 'dvc', chunk(bytes()) + chunk(dvc_create) + chunk(dvc_data_client) + chunk(dvc_data_client))
w('rdp_relay', 'share', chunk(demand_active) + chunk(input_pdu) + chunk(deactivate) + chunk(b'') + chunk(save_session))

# Recorded input: fast-path input PDUs (scancodes, unicode) and a slow-path
# Input PDU (top bit of the length), after a layout byte (see rdp_keystrokes.rs).
def fp(events):
    body = b''.join(events)
    return bytes([len(events) << 2, 2 + len(body)]) + body
def key(c, rel=False):
    return bytes([0x01 if rel else 0, c])
def uni(u):
    return bytes([0x80]) + struct.pack('<H', u)
def kchunk(b, slow=False):
    return struct.pack('<H', len(b) | (0x8000 if slow else 0)) + b
ks = (b''.join(kchunk(fp([key(c), key(c, True)])) for c in [0x23, 0x17, 0x1c])
      + kchunk(fp([uni(0x3042)])) + kchunk(input_pdu, True))
w('rdp_keystrokes', 'us_hi_enter', bytes([0]) + ks)
w('rdp_keystrokes', 'jp_hi_enter', bytes([1]) + ks)
