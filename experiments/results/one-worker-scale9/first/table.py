# The engine/baseline table of README.md from the sweeps in this folder: python3 table.py [DIR]
import json,sys,glob,statistics
base=sys.argv[1] if len(sys.argv) > 1 else __file__.rsplit('/', 1)[0]
qs=['ysb','q5','q7','q8','q11']
res={}
for b in ['before','after']:
    for r in sorted(glob.glob(f'{base}/{b}-*')):
        if not r[-1].isdigit(): continue
        rate={}
        for line in open(f'{r}/runs.jsonl'):
            j=json.loads(line); rate[(j['query'],j['engine'])]=j['achieved_rate']
        for q in qs:
            res.setdefault((b,q),[]).append((rate[(q,'timely')],rate[(q,'baseline')]))
print('| query | before (main) per repetition | after per repetition | median before -> after | target |')
print('| --- | --- | --- | --- | --- |')
for q in qs:
    tgt='1.0' if q=='ysb' else '0.9'
    cells=[]
    meds=[]
    for b in ['before','after']:
        rs=[t/bb for t,bb in res[(b,q)]]
        cells.append(', '.join(f'{x:.2f}' for x in rs)); meds.append(statistics.median(rs))
    print(f'| {q.upper() if q=="ysb" else q} | {cells[0]} | {cells[1]} | {meds[0]:.2f} -> {meds[1]:.2f} | {tgt} |')
print()
for q in qs:
    for b in ['before','after']:
        print(q,b,' '.join(f'{t/1e6:.1f}/{bb/1e6:.1f}' for t,bb in res[(b,q)]))
