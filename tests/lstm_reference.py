# Pure-Python float64 reference for tests/lstm.rs (PyTorch LSTM equations, gates i, f, g, o).
import math
def fill(n, a, b, m=11, s=10.0):
    return [((k*a+b) % m - m//2)/s for k in range(n)]
T,B,I,H=2,2,3,2
G=4*H
def sig(z): return 1/(1+math.exp(-z))
def run(x,h0,c0,wih,whh,bih,bhh, wo, wc):
    h=[h0[b*H:(b+1)*H] for b in range(B)]; c=[c0[b*H:(b+1)*H] for b in range(B)]
    out=[]; s=0.0
    for t in range(T):
        nh=[];nc=[]
        for b in range(B):
            z=[bih[r]+bhh[r]+sum(x[(t*B+b)*I+k]*wih[r*I+k] for k in range(I))+sum(h[b][k]*whh[r*H+k] for k in range(H)) for r in range(G)]
            hh=[];cc=[]
            for j in range(H):
                i,f,g,o=sig(z[j]),sig(z[H+j]),math.tanh(z[2*H+j]),sig(z[3*H+j])
                cj=f*c[b][j]+i*g; hj=o*math.tanh(cj)
                cc.append(cj); hh.append(hj); out.append(hj); s+=hj*wo[(t*B+b)*H+j]
            nh.append(hh); nc.append(cc)
        h,c=nh,nc
    cf=[v for r in c for v in r]
    s+=sum(a*w for a,w in zip(cf,wc))
    return out,cf,s
args=[fill(T*B*I,7,1),fill(B*H,3,2),fill(B*H,5,4),fill(G*I,4,3),fill(G*H,6,5),fill(G,2,7),fill(G,9,1)]
wo=fill(T*B*H,5,3); wc=fill(B*H,7,2)
out,cf,_=run(*args,wo,wc)
print("out", ", ".join("%.8f"%v for v in out))
print("c_n", ", ".join("%.8f"%v for v in cf))
for k,name in enumerate(["x","h0","c0","w_ih","w_hh","b_ih","b_hh"]):
    g=[]
    for idx in range(len(args[k])):
        ap=[list(v) for v in args]; am=[list(v) for v in args]
        ap[k][idx]+=1e-6; am[k][idx]-=1e-6
        g.append((run(*ap,wo,wc)[2]-run(*am,wo,wc)[2])/2e-6)
    print(name, ", ".join("%.7f"%v for v in g))
