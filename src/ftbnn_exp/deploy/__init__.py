"""Deployment with bit operations (Appendix B): packed export, exact bit-op reference engine."""
