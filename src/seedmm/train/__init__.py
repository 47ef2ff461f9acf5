"""seedmm.train"""
