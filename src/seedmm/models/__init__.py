"""seedmm.models"""
