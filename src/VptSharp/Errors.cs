namespace VptSharp;

/// <summary>A checkpoint or task file that cannot be used as asked; the message names the file and the fix.</summary>
public sealed class CheckpointException(string message) : Exception(message);
