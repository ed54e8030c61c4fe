"""The entanglement network: pair states behind one interface, link and network layers for quantum
routers (heralded generation, swapping, purification, cut-offs), and entanglement-based QKD over them.

- :mod:`.states`: the formalisms (Bell-diagonal, density matrix, stabilizer with stim), chosen per run;
- :mod:`.network`: the discrete-event simulation of requests between routers;
- :mod:`.analysis`: closed forms the simulation is checked against.
"""
