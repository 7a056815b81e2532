using System.Text.Json;

namespace VptSharp.IO;

/// <summary>Enum values as kebab-case words (ImagePool ↔ "image-pool"): the spelling task files and messages use.</summary>
public static class KebabCase
{
    /// <summary>"image-pool" for ImagePool; the same conversion the JSON of task files applies to enum values.</summary>
    public static string Of<T>(T value) where T : struct, Enum => JsonNamingPolicy.KebabCaseLower.ConvertName(value.ToString());

    /// <summary>Every value of <typeparamref name="T"/> in kebab case, e.g. "cls, image-pool, prompt-pool".</summary>
    public static IEnumerable<string> Names<T>() where T : struct, Enum => Enum.GetValues<T>().Select(Of);

    /// <summary>The value whose kebab-case (or plain) name is <paramref name="text"/>, case-insensitively; null if none.</summary>
    public static T? Parse<T>(string text) where T : struct, Enum =>
        Enum.TryParse<T>(text.Replace("-", ""), ignoreCase: true, out var v) && Enum.IsDefined(v) ? v : null;
}
