"""Math: ``add`` and ``multiply`` (AI-Trader's ``agent_tools/tool_math.py``).

Stateless and environment-free; results are floats (structured as ``{"result": x}``).
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

NAME = "Math"


def create_server() -> MCPServer:
    """The "Math" MCP server."""
    mcp: MCPServer = MCPServer(NAME, instructions="Exact arithmetic for order sizes and values.")

    @mcp.tool()
    def add(a: float, b: float) -> float:
        """Add two numbers (supports int and float)."""
        return float(a + b)

    @mcp.tool()
    def multiply(a: float, b: float) -> float:
        """Multiply two numbers (supports int and float)."""
        return float(a * b)

    return mcp
