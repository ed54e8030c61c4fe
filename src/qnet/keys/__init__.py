"""Key management layer (Y.3803 KMA/KSA): key pools, the transactional key store, key relay, key
supply. Pure logic with time passed in; a KeySource protocol is the seam where a simulated link or
a vendor device plugs in. Filled by the KME issue. Imports security, units, errors; never quantum.
"""
