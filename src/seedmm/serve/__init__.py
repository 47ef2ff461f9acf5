"""seedmm.serve"""
