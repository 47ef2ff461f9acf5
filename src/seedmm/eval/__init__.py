"""seedmm.eval"""
