# Engine / baseline achieved rate of each repetition in the q11-only folders: python3 q11table.py DIR
import json, statistics, sys, glob
base = sys.argv[1] if len(sys.argv) > 1 else __file__.rsplit('/', 1)[0]
for b in ['before', 'after']:
    rs = []
    for d in sorted(glob.glob(f'{base}/{b}-*/'), key=lambda d: int(d.rstrip('/').rsplit('-', 1)[1])):
        rate = {}
        for line in open(f'{d}runs.jsonl'):
            j = json.loads(line)
            rate[j['engine']] = j['achieved_rate']
        rs.append((rate['timely'], rate['baseline']))
    r = [t / bb for t, bb in rs]
    print(b, ', '.join(f'{x:.2f}' for x in r), '| median %.2f' % statistics.median(r))
    print('   M/s engine/baseline:', ' '.join(f'{t/1e6:.1f}/{bb/1e6:.1f}' for t, bb in rs))
