namespace VptSharp.Training;

/// <summary>The loss became NaN or infinite; the last good checkpoint is kept.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
